"""The report's tables (artifacts, stages, training runs) as cell strings, for both Markdown and HTML."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .curves import MAP50_PREFIX, MAP5095_PREFIX, Curves, kd_columns, last_kd_epoch, map_column
from .records import ArtifactResult, PipelineReport

MISSING = "—"
LATENCY_ORDER = ("preprocess", "inference", "postprocess")


@dataclass
class Table:
    """Header and rows of cell strings, rendered to both Markdown and HTML."""

    header: list[str]
    rows: list[list[str]]
    text_columns: tuple[int, ...] = (0,)  # left aligned; the rest are numbers, right aligned


def is_missing(value: float | None) -> bool:
    """True for a value that was not measured (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals, or an em dash where it is missing."""
    return MISSING if is_missing(value) else f"{value:.{digits}f}"


def fmt_params(params: int | None) -> str:
    """Parameter count in millions, two decimals."""
    return MISSING if params is None else f"{params / 1e6:.2f}"


def percent_of(value: float | None, reference: float | None) -> str:
    """``value`` as a percentage of ``reference`` (one decimal), or an em dash."""
    if is_missing(value) or is_missing(reference) or reference == 0:
        return MISSING
    return f"{100.0 * value / reference:.1f}"


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
    parts = [v for k, v in lat.items() if not is_missing(v)]
    return sum(parts) if parts else None


def artifact_table(report: PipelineReport) -> Table:
    """The artifact table: measured numbers, latency per stage and relative columns."""
    stages = latency_stages(report.artifacts)
    teacher = report.teacher
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


def robustness_table(report: PipelineReport) -> Table | None:
    """mAP50-95 of each artifact clean and under each corruption, mPC and rPC (None: nothing was corrupted)."""
    scored = [a for a in report.artifacts if a.robustness is not None]
    if not scored:
        return None
    names = list(scored[0].robustness.per_corruption)
    header = ["artifact", "clean"] + names + ["mPC", "rPC %", "mPC kept %"]
    teacher = report.teacher.robustness if report.teacher and report.teacher.robustness else None
    rows = []
    for a in scored:
        r = a.robustness
        rows.append([a.name, fmt(r.clean, 3)] + [fmt(r.per_corruption.get(n), 3) for n in names]
                    + [fmt(r.mpc, 3), fmt(100 * r.rpc, 1), percent_of(r.mpc, teacher.mpc if teacher else None)])
    return Table(header, rows)


def robustness_caption(report: PipelineReport) -> str:
    return ("mAP50-95 on the same images under each corruption (a name alone: the mean over severities 1-5), mPC "
            "the mean over corruptions (one given at several severities counts once), rPC = mPC / clean; mPC kept %: "
            "of the teacher's mPC. Seeded albumentations corruptions (detdistill eval --corrupt).")


def stage_table(report: PipelineReport) -> Table:
    """Pipeline stages with their status and this run's wall time (a cached stage took none: "-", its time is in
    the run that made it), and a total row that says when it leaves cached stages out."""
    rows = [[name, status, "-" if status == "cached" else fmt(seconds, 1)] for name, status, seconds in report.stages]
    if rows:
        cached = sum(status == "cached" for _, status, _ in report.stages)
        rows.append([f"total of this run ({cached} cached: their time was spent in earlier runs)" if cached
                     else "total", "", fmt(sum(s for _, _, s in report.stages), 1)])
    return Table(["stage", "status", "seconds this run"], rows, (0, 1))


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


KD_HEADER = "KD losses (last epoch with KD on)"  # a schedule may turn KD off for the final epochs


def evaluation_caption(report: PipelineReport) -> str:
    """Which images the mAP columns were measured on (empty where the runner did not say)."""
    if report.eval_images is None:
        return ""
    on = (f"all {report.eval_images} images" if report.eval_images == report.eval_total else
          f"the first {report.eval_images} of the {report.eval_total} images")
    return f"mAP50-95 and mAP50 of every artifact on {on} of the {report.eval_split} split of {report.data}."


def training_table(curves: list[Curves]) -> Table:
    """One row per training run: epochs, final and best mAP, and the KD loss columns found."""
    header = ["run", "epochs", "final mAP50-95", "final mAP50", "best mAP50-95", KD_HEADER]
    return Table(header, [_training_row(c) for c in curves], (0, 5))


def _training_row(c: Curves) -> list[str]:
    if c.problem:
        return [c.name, MISSING, MISSING, MISSING, MISSING, f"no training curves: {c.problem}"]
    k5095, k50 = map_column(c, MAP5095_PREFIX), map_column(c, MAP50_PREFIX)
    final = [fmt(_last(c.columns[k]) if k else None, 3) for k in (k5095, k50)]
    return [c.name, str(len(c.epochs)), *final, _best(c, k5095), _kd_cell(c)]


def _kd_cell(c: Curves) -> str:
    """The KD losses of the last epoch with KD on, and the epochs after it (KD off) when there are any."""
    names = kd_columns(c)
    if not names:
        return "none"
    i = last_kd_epoch(c)
    if i is None:
        return "KD off in every epoch"
    kd = ", ".join(f"{k} {fmt(c.columns[k][i] if i < len(c.columns[k]) else None, 4)}" for k in names)
    epochs = c.epochs
    if i == len(epochs) - 1:
        return kd
    off = f"{epochs[i + 1]:g}" + (f"-{epochs[-1]:g}" if len(epochs) > i + 2 else "")
    return f"{kd} (epoch {epochs[i]:g}; KD off in epoch{'s' * (len(epochs) > i + 2)} {off})"


def relative_caption(report: PipelineReport) -> str:
    """What the relative columns are relative to."""
    teacher = report.teacher
    if teacher is None:
        return "No teacher artifact: relative columns are empty."
    return (
        f"Latencies are medians in ms over the timed runs, each column on its own: \"total\" is the median of "
        f"each run's total, not the sum of the stage medians. \"mAP kept %\" and \"GFLOPs %\" are relative to "
        f"\"{teacher.name}\"."
    )
