"""The pipeline's report: one Markdown file and one self-contained HTML file from its results.

The runner measures every artifact (checkpoints, ONNX files, TensorRT engines) and hands the
numbers over as a :class:`PipelineReport`; :func:`write_report` turns them into ``report.md``
and ``report.html``. The HTML page carries its own CSS and its plots as inline base64 PNG, so
it opens anywhere, offline, as one file. Plots need matplotlib (the ``train`` extra brings it);
without it the page still has every table and says why the plots are missing.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MISSING = "—"
LATENCY_ORDER = ("preprocess", "inference", "postprocess")
TASK_LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
KD_PREFIXES = ("train/kd_", "train/dis_")  # ours, and ultralytics' own distillation loss
MAP5095_PREFIX = "metrics/mAP50-95("
MAP50_PREFIX = "metrics/mAP50("


@dataclass
class ArtifactResult:
    """One measured artifact: a checkpoint, an ONNX file or an engine."""

    name: str
    kind: str  # "pt" | "onnx" | "engine"
    path: Path
    size_mb: float
    params: int | None  # None where not measurable
    gflops: float | None  # at the artifact's input size
    map50_95: float | None
    map50: float | None
    latency_ms: dict[str, float] = field(default_factory=dict)  # median ms per stage
    backend: str = ""  # e.g. "onnxruntime CPU", "tensorrt", "pytorch"
    note: str = ""
    imgsz: int | None = None  # input size it runs and was measured at


@dataclass
class TrainingRun:
    """One training run whose ultralytics ``results.csv`` becomes curves and a summary row."""

    name: str
    results_csv: Path


@dataclass
class PipelineReport:
    """Everything the pipeline measured, as handed to :func:`write_report`."""

    title: str
    config_text: str  # the recipe YAML as run
    machine: str
    imgsz: int
    data: str  # dataset yaml path
    artifacts: list[ArtifactResult]
    training: list[TrainingRun]
    stages: list[tuple[str, str, float]]  # (stage name, "ran"|"cached"|"skipped: reason", seconds)
    notes: list[str]


@dataclass
class Table:
    """Header and rows of cell strings, rendered to both Markdown and HTML."""

    header: list[str]
    rows: list[list[str]]
    text_columns: tuple[int, ...] = (0,)  # left aligned; the rest are numbers, right aligned


@dataclass
class Curves:
    """A results.csv as columns of floats (header names stripped), or why it could not be read."""

    name: str
    columns: dict[str, list[float]]
    problem: str = ""

    @property
    def epochs(self) -> list[float]:
        """The epoch column, or 1..n where the csv has none."""
        n = max((len(v) for v in self.columns.values()), default=0)
        return self.columns.get("epoch") or [float(i + 1) for i in range(n)]


# ---------------------------------------------------------------- formatting


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals, or an em dash where it is missing."""
    return MISSING if _missing(value) else f"{value:.{digits}f}"


def fmt_params(params: int | None) -> str:
    """Parameter count in millions, two decimals."""
    return MISSING if params is None else f"{params / 1e6:.2f}"


def percent_of(value: float | None, reference: float | None) -> str:
    """``value`` as a percentage of ``reference`` (one decimal), or an em dash."""
    if _missing(value) or _missing(reference) or reference == 0:
        return MISSING
    return f"{100.0 * value / reference:.1f}"


# ---------------------------------------------------------------- artifact numbers


def find_teacher(artifacts: list[ArtifactResult]) -> ArtifactResult | None:
    """The artifact named "teacher", else the first whose name starts with it, else None."""
    named = [a for a in artifacts if a.name.strip().lower() == "teacher"]
    named = named or [a for a in artifacts if a.name.strip().lower().startswith("teacher")]
    return named[0] if named else None


def latency_stages(artifacts: list[ArtifactResult]) -> list[str]:
    """Latency stage names across artifacts: the usual three first, then any others seen."""
    seen = [k for a in artifacts for k in a.latency_ms if k != "total"]
    extra = [k for i, k in enumerate(seen) if k not in LATENCY_ORDER and k not in seen[:i]]
    return [k for k in LATENCY_ORDER if k in seen] + extra


def total_latency(artifact: ArtifactResult) -> float | None:
    """The measured total, else the sum of the stage medians, else None."""
    lat = artifact.latency_ms
    if "total" in lat:
        return lat["total"]
    parts = [v for k, v in lat.items() if not _missing(v)]
    return sum(parts) if parts else None


def artifact_table(report: PipelineReport) -> Table:
    """The artifact table: measured numbers, latency per stage and relative columns."""
    stages = latency_stages(report.artifacts)
    teacher = find_teacher(report.artifacts)
    header = ["artifact", "kind", "evaluated by", "imgsz", "params (M)", "GFLOPs", "size MB", "mAP50-95", "mAP50"]
    header += [f"{s} ms" for s in stages] + ["total ms", "mAP kept %", "GFLOPs %", "note"]
    rows = [_artifact_row(a, stages, teacher) for a in report.artifacts]
    return Table(header, rows, (0, 1, 2, len(header) - 1))


def _artifact_row(a: ArtifactResult, stages: list[str], teacher: ArtifactResult | None) -> list[str]:
    t_map = teacher.map50_95 if teacher else None
    t_flops = teacher.gflops if teacher else None
    row = [a.name, a.kind, a.backend or MISSING, str(a.imgsz or MISSING), fmt_params(a.params), fmt(a.gflops, 2)]
    row += [fmt(a.size_mb, 2), fmt(a.map50_95, 3), fmt(a.map50, 3)]
    row += [fmt(a.latency_ms.get(s), 2) for s in stages] + [fmt(total_latency(a), 2)]
    return row + [percent_of(a.map50_95, t_map), percent_of(a.gflops, t_flops), a.note]


def stage_table(report: PipelineReport) -> Table:
    """Pipeline stages with their status and wall time, and a total row."""
    rows = [[name, status, fmt(seconds, 1)] for name, status, seconds in report.stages]
    if rows:
        rows.append(["total", "", fmt(sum(s for _, _, s in report.stages), 1)])
    return Table(["stage", "status", "seconds"], rows, (0, 1))


# ---------------------------------------------------------------- training curves


def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return math.nan


def _last_row_per_epoch(keys: list[str], rows: list[list[str]]) -> list[list[str]]:
    """Each epoch once, from its last row: a resumed training redoes the epoch it was killed in and appends
    a second row for it. Epochs keep the order they first appear in; rows without a readable epoch are kept."""
    if "epoch" not in keys:
        return rows
    col = keys.index("epoch")
    last: dict[Any, list[str]] = {}
    for i, row in enumerate(rows):
        epoch = _to_float(row[col]) if col < len(row) else math.nan
        last[("row", i) if math.isnan(epoch) else epoch] = row
    return list(last.values())


def read_results_csv(name: str, path: Path) -> Curves:
    """Read an ultralytics results.csv; header names are stripped (older versions pad them)."""
    path = Path(path)
    if not path.is_file():
        return Curves(name, {}, f"{path} not found")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            lines = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return Curves(name, {}, f"{path} unreadable ({err})")
    if len(lines) < 2:
        return Curves(name, {}, f"{path} has no epochs")
    keys = [h.strip() for h in lines[0]]
    cols: dict[str, list[float]] = {k: [] for k in keys if k}
    for row in _last_row_per_epoch(keys, lines[1:]):
        row = row + [""] * (len(keys) - len(row))  # a row cut short (training killed) pads with NaN
        for key, cell in zip(keys, row):
            if key:
                cols[key].append(_to_float(cell))
    return Curves(name, cols)


def map_column(curves: Curves, prefix: str) -> str | None:
    """The first column whose name starts with ``prefix`` (box metrics come first)."""
    return next((k for k in curves.columns if k.startswith(prefix)), None)


def kd_columns(curves: Curves) -> list[str]:
    """The distillation loss columns in the training set (``train/kd_*``, ``train/dis_*``)."""
    return [k for k in curves.columns if k.startswith(KD_PREFIXES)]


def loss_columns(curves: Curves) -> list[str]:
    """Task losses first, then the distillation losses, then any other ``train/`` column."""
    train = [k for k in curves.columns if k.startswith("train/")]
    kd = kd_columns(curves)
    task = [k for k in TASK_LOSSES if k in train]
    return task + kd + [k for k in train if k not in task and k not in kd]


def _last(values: list[float]) -> float | None:
    good = [v for v in values if not math.isnan(v)]
    return good[-1] if good else None


def _best(curves: Curves, key: str | None) -> str:
    values = curves.columns.get(key or "", [])
    good = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not good:
        return MISSING
    value, i = max(good)
    return f"{value:.3f} (epoch {curves.epochs[i]:g})"


def training_table(curves: list[Curves]) -> Table:
    """One row per training run: epochs, final and best mAP, and the KD loss columns found."""
    header = ["run", "epochs", "final mAP50-95", "final mAP50", "best mAP50-95", "KD losses (final)"]
    return Table(header, [_training_row(c) for c in curves], (0, 5))


def _training_row(c: Curves) -> list[str]:
    if c.problem:
        return [c.name, MISSING, MISSING, MISSING, MISSING, f"no training curves: {c.problem}"]
    k5095, k50 = map_column(c, MAP5095_PREFIX), map_column(c, MAP50_PREFIX)
    final = [fmt(_last(c.columns[k]) if k else None, 3) for k in (k5095, k50)]
    kd = [f"{k} {fmt(_last(c.columns[k]), 4)}" for k in kd_columns(c)]
    return [c.name, str(len(c.epochs)), *final, _best(c, k5095), ", ".join(kd) or "none"]


def training_notes(curves: list[Curves]) -> list[str]:
    """A "no training curves" note for every run whose csv was missing or empty."""
    return [f"no training curves for {c.name}: {c.problem}" for c in curves if c.problem]


# ---------------------------------------------------------------- Markdown


def md_text(text: object) -> str:
    """Text for Markdown prose and table cells: pipes and angle brackets escaped, one line."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return out.replace("<", "\\<").replace(">", "\\>").replace("\n", " ")


def md_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table; text columns left, numbers right aligned."""
    if not table.rows:
        return "_none_"
    align = ["---" if i in table.text_columns else "---:" for i in range(len(table.header))]
    lines = [[md_text(c) for c in line] for line in (table.header, *table.rows)]
    lines.insert(1, align)
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _md_fence(text: str) -> str:
    ticks = 3
    while "`" * ticks in text:
        ticks += 1
    return "`" * ticks


def render_markdown(report: PipelineReport, curves: list[Curves]) -> str:
    """The whole report as Markdown."""
    notes = report.notes + training_notes(curves)
    fence = _md_fence(report.config_text)
    parts = [
        f"# {md_text(report.title)}",
        f"- **machine:** {md_text(report.machine)}\n- **data:** `{report.data}`\n- **imgsz:** {report.imgsz}",
        "## Artifacts",
        md_table(artifact_table(report)),
        md_text(_relative_caption(report)),
        "## Stages",
        md_table(stage_table(report)),
        "## Notes",
        "\n".join(f"- {md_text(n)}" for n in notes) or "_none_",
        "## Training",
        md_table(training_table(curves)),
        "## Recipe",
        f"{fence}yaml\n{report.config_text.rstrip()}\n{fence}",
    ]
    return "\n\n".join(parts) + "\n"


def _relative_caption(report: PipelineReport) -> str:
    teacher = find_teacher(report.artifacts)
    if teacher is None:
        return "No artifact named \"teacher\": relative columns are empty."
    return (
        f"Latencies are medians in ms. \"mAP kept %\" and \"GFLOPs %\" are relative to "
        f"\"{teacher.name}\"."
    )


# ---------------------------------------------------------------- plots


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
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


def _scatter(points: list[tuple[int, str, float, float, float]], xlabel: str, title: str) -> bytes:
    """mAP50-95 (y) against ``xlabel`` (x); marker area grows with file size; labelled."""
    fig = _new_figure(7.0, 4.6)
    ax = fig.add_subplot()
    biggest = max(p[4] for p in points) or 1.0
    for index, name, x, y, size in points:
        ax.scatter([x], [y], s=40 + 600 * size / biggest, alpha=0.6, color=_color(index))
        ax.annotate(_label(name), (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8)
    ax.set(xlabel=xlabel, ylabel="mAP50-95", title=title)
    ax.margins(0.15)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def plot_map_vs_latency(artifacts: list[ArtifactResult]) -> bytes | None:
    """mAP50-95 against median inference latency; None when no artifact has both."""
    pts = [
        (i, a.name, a.latency_ms["inference"], a.map50_95, a.size_mb)
        for i, a in enumerate(artifacts)
        if not _missing(a.map50_95) and not _missing(a.latency_ms.get("inference"))
    ]
    title = "accuracy vs inference latency (marker area ~ file size)"
    return _scatter(pts, "median inference latency (ms)", title) if pts else None


def plot_map_vs_gflops(artifacts: list[ArtifactResult]) -> bytes | None:
    """mAP50-95 against GFLOPs; None when no artifact has both."""
    pts = [
        (i, a.name, a.gflops, a.map50_95, a.size_mb)
        for i, a in enumerate(artifacts)
        if not _missing(a.map50_95) and not _missing(a.gflops)
    ]
    return _scatter(pts, "GFLOPs", "accuracy vs compute (marker area ~ file size)") if pts else None


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
    from matplotlib.ticker import MaxNLocator

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
        import matplotlib  # noqa: F401
    except ImportError:
        return [], ["matplotlib is not installed: no plots (pip install matplotlib)"]
    arts = report.artifacts
    wanted = [
        ("mAP50-95 vs median inference latency", plot_map_vs_latency, arts),
        ("mAP50-95 vs GFLOPs", plot_map_vs_gflops, arts),
        ("file size", plot_sizes, arts),
    ]
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


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #4c72b0;padding-bottom:.2em}
h2{margin-top:1.6em;color:#333}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em;white-space:nowrap}
th{background:#eef2f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;border:1px solid #ddd}
.muted{color:#666;font-size:.9em}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_table(table: Table) -> str:
    """An HTML table; every cell escaped, number columns right aligned."""
    if not table.rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in table.header)
    body = "\n".join(
        "<tr>" + "".join(_html_cell(c, i not in table.text_columns) for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _html_cell(text: str, numeric: bool) -> str:
    return f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>"


def html_figure(caption: str, png: bytes) -> str:
    """An inline PNG figure with its caption."""
    data = base64.b64encode(png).decode("ascii")
    cap = _esc(caption)
    img = f'<img src="data:image/png;base64,{data}" alt="{cap}">'
    return f"<figure>{img}<figcaption>{cap}</figcaption></figure>"


def render_html(
    report: PipelineReport, curves: list[Curves], plots: list[tuple[str, bytes]], notes: list[str]
) -> str:
    """The whole report as one self-contained HTML page."""
    facts = "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
        for k, v in (("machine", report.machine), ("data", report.data), ("imgsz", report.imgsz))
    )
    note_items = "".join(f"<li>{_esc(n)}</li>" for n in notes) or "<li>none</li>"
    figures = "\n".join(html_figure(c, p) for c, p in plots) or '<p class="muted">no plots</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(report.title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{_esc(report.title)}</h1>
<dl>{facts}</dl>
<h2>Artifacts</h2>
{html_table(artifact_table(report))}
<p class="muted">{_esc(_relative_caption(report))}</p>
<h2>Plots</h2>
{figures}
<h2>Stages</h2>
{html_table(stage_table(report))}
<h2>Notes</h2>
<ul>{note_items}</ul>
<h2>Training</h2>
{html_table(training_table(curves))}
<h2>Recipe</h2>
<pre><code>{_esc(report.config_text)}</code></pre>
</body>
</html>
"""


# ---------------------------------------------------------------- entry point


def write_report(report: PipelineReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = [read_results_csv(run.name, run.results_csv) for run in report.training]
    plots, plot_notes = make_plots(report, curves)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(render_markdown(report, curves), encoding="utf-8")
    notes = report.notes + training_notes(curves) + plot_notes
    html_path.write_text(render_html(report, curves, plots, notes), encoding="utf-8")
    return md_path, html_path


__all__ = [
    "ArtifactResult",
    "PipelineReport",
    "TrainingRun",
    "read_results_csv",
    "render_html",
    "render_markdown",
    "write_report",
]
