"""The report's plots as PNG bytes: mAP against latency and GFLOPs, file sizes, training curves.

They need matplotlib (the ``train`` extra brings it); a plot that cannot be drawn becomes a note.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from .curves import MAP5095_PREFIX, Curves, loss_columns, map_column
from .records import ArtifactResult, PipelineReport
from .tables import is_missing


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib (optional: no plots without it)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _label(text: str) -> str:
    return text.replace("$", r"\$")  # no mathtext surprises from names


def _color(index: int) -> str:
    """The same colour for an artifact in every plot (its position in the artifact list)."""
    return f"C{index % 10}"


def _scatter(points: list[tuple[int, str, float, float, float]], xlabel: str, title: str):
    """A figure of mAP50-95 (y) against ``xlabel`` (x); marker area grows with file size. Names go in a legend
    below the axes: beside their points they overlap where two artifacts score and run alike."""
    fig = _new_figure(7.0, 4.6 + 0.2 * math.ceil(len(points) / 2))
    ax = fig.add_subplot()
    biggest = max(p[4] for p in points) or 1.0
    for index, name, x, y, size in points:
        ax.scatter([x], [y], s=40 + 600 * size / biggest, alpha=0.6, color=_color(index), label=_label(name))
    ax.set(xlabel=xlabel, ylabel="mAP50-95", title=title)
    ax.margins(0.15)
    ax.grid(alpha=0.3)
    legend = fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    for handle in legend.legend_handles:
        handle.set_sizes([40])  # one marker size in the legend: the plot's areas are file sizes
    return fig


def plot_map_vs_latency(artifacts: list[ArtifactResult]) -> bytes | None:
    """mAP50-95 against median inference latency; None when no artifact has both."""
    pts = [
        (i, a.name, a.latency_ms["inference"], a.map50_95, a.size_mb)
        for i, a in enumerate(artifacts)
        if not is_missing(a.map50_95) and not is_missing(a.latency_ms.get("inference"))
    ]
    title = "accuracy vs inference latency (marker area ~ file size)"
    return png_bytes(_scatter(pts, "median inference latency (ms)", title)) if pts else None


def plot_map_vs_gflops(artifacts: list[ArtifactResult]) -> bytes | None:
    """mAP50-95 against GFLOPs; None when no artifact has both."""
    pts = [
        (i, a.name, a.gflops, a.map50_95, a.size_mb)
        for i, a in enumerate(artifacts)
        if not is_missing(a.map50_95) and not is_missing(a.gflops)
    ]
    return png_bytes(_scatter(pts, "GFLOPs", "accuracy vs compute (marker area ~ file size)")) if pts else None


def plot_sizes(artifacts: list[ArtifactResult]) -> bytes | None:
    """Horizontal bar chart of file sizes; None when there are no artifacts."""
    if not artifacts:
        return None
    fig = _new_figure(7.0, 1.2 + 0.4 * len(artifacts))
    ax = fig.add_subplot()
    names = [_label(a.name) for a in artifacts][::-1]
    sizes = [a.size_mb for a in artifacts][::-1]
    colors = [_color(i) for i in range(len(artifacts))][::-1]
    bars = ax.barh(range(len(names)), sizes, color=colors, alpha=0.8, tick_label=names)
    ax.bar_label(bars, labels=[f"{s:.2f}" for s in sizes], padding=3, fontsize=8)
    ax.set(xlabel="file size (MB)", title="artifact size")
    ax.margins(x=0.15)
    return png_bytes(fig)


def plot_robustness(artifacts: list[ArtifactResult]) -> bytes | None:
    """Paired bars: clean mAP50-95 and mean mAP50-95 under corruption (mPC) per artifact; None when none was scored."""
    scored = [a for a in artifacts if a.robustness is not None]
    if not scored:
        return None
    fig = _new_figure(7.0, 1.4 + 0.55 * len(scored))
    ax = fig.add_subplot()
    y = list(range(len(scored)))[::-1]
    clean = [a.robustness.clean for a in scored]
    mpc = [a.robustness.mpc for a in scored]
    ax.barh([v + 0.2 for v in y], clean, height=0.4, color=_color(0), alpha=0.8, label="clean")
    ax.barh([v - 0.2 for v in y], mpc, height=0.4, color=_color(3), alpha=0.8, label="under corruption (mPC)")
    ax.set_yticks(y, [_label(a.name) for a in scored])
    ax.set(xlabel="mAP50-95", title="accuracy clean and under corruption")
    ax.legend(fontsize=8, loc="lower right")
    return png_bytes(fig)


def plot_training(curves: Curves) -> bytes | None:
    """Val mAP50-95 per epoch, then one panel per training loss; None when nothing to draw."""
    key = map_column(curves, MAP5095_PREFIX)
    panels = ([key] if key else []) + loss_columns(curves)
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    width, height = 3.6 * cols, 2.6 * rows + 0.4
    fig = _new_figure(width, height, layout=None)  # fixed margins: constrained layout doubles the time
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.15 / width, bottom=0.45 / height,
                        top=1 - 0.7 / height, wspace=0.3, hspace=0.55)
    fig.suptitle(_label(f"training: {curves.name}"))
    for i, column in enumerate(panels):
        _training_panel(fig.add_subplot(rows, cols, i + 1), curves, column)
    return png_bytes(fig)


def _training_panel(ax, curves: Curves, column: str) -> None:
    """One panel: a training loss (with its val counterpart where it is nonzero) or val mAP."""
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib (as above)

    epochs = curves.epochs
    is_train = column.startswith("train/")
    ax.plot(epochs, curves.columns[column], marker=".", label="train" if is_train else "val")
    val = "val/" + column.removeprefix("train/")
    if is_train and any(v and not math.isnan(v) for v in curves.columns.get(val, [])):
        ax.plot(epochs, curves.columns[val], linestyle="--", marker=".", label="val")
        ax.legend(fontsize=7)
    ax.set_title(column, fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def make_plots(report: PipelineReport, curves: list[Curves]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Every plot as (caption, PNG bytes), and notes on what could not be drawn."""
    try:
        # lazy: matplotlib (optional: no plots without it)
        import matplotlib  # noqa: F401
    except ImportError:
        return [], ["matplotlib is not installed: no plots (pip install matplotlib)"]
    arts = report.artifacts
    wanted = [
        ("mAP50-95 vs median inference latency", plot_map_vs_latency, arts),
        ("mAP50-95 vs GFLOPs", plot_map_vs_gflops, arts),
        ("file size", plot_sizes, arts),
    ]
    if any(a.robustness is not None for a in arts):
        wanted.append(("robustness: clean and under corruption", plot_robustness, arts))
    wanted += [(f"training curves: {c.name}", plot_training, c) for c in curves if not c.problem]
    plots: list[tuple[str, bytes]] = []
    notes: list[str] = []
    for caption, draw, data in wanted:
        png, problem = _draw(draw, data)
        if png is None:
            notes.append(f"no plot: {caption} ({problem})")
        else:
            plots.append((caption, png))
    return plots, notes


def _draw(draw: Callable[[Any], bytes | None], data: Any) -> tuple[bytes | None, str]:
    """Run one plot function; a failing plot becomes a note, never a failed report."""
    try:
        png = draw(data)
    except Exception as err:  # noqa: BLE001 - the tables matter more than any one plot
        return None, f"plotting failed: {type(err).__name__}: {err}"
    return png, "" if png is not None else "nothing to draw"
