"""The measurement stages: accuracy, latency, parameters and GFLOPs of every artifact through
``detdistill.runtime``, and the headless demo on a video of the validation images."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..data.class_map import describe_scoring, score_map
from ..data.corruptions import parse_spec
from ..export.robustness import Robustness, robustness as score_under
from ..models import class_names, count_gflops, count_params, load_detection_checkpoint
from .artifacts import Artifact
from .context import StageContext
from .dataset_files import DataInput
from .report.records import ArtifactResult
from .video import video_from_images

METRIC = "coco"  # in the measure keys: numbers of another metric are measured again


def model_stats(weights: Path, imgsz: int) -> tuple[int, float]:
    """Parameters and GFLOPs (at ``imgsz``) of a ``.pt`` checkpoint."""
    model = load_detection_checkpoint(weights)[0].float()
    return count_params(model), count_gflops(model, imgsz)


def measure(ctx: StageContext, artifact: Artifact, data: Path) -> ArtifactResult:
    """mAP, median latency per stage, parameters and GFLOPs of ``artifact`` at its input size."""
    from ..export.bench import bench  # lazy: cv2 (only this stage needs it)
    from ..export.evaluate import UnmappedClassesWarning, evaluate

    m = ctx.cfg.measure
    class_map = teacher_class_map(ctx, artifact.source, data) if artifact.is_teacher else None

    def run() -> dict:
        with warnings.catch_warnings():  # the report's note names the classes the teacher is not scored on
            warnings.simplefilter("ignore", UnmappedClassesWarning)
            acc = evaluate(artifact.path, data, imgsz=artifact.imgsz, limit=m.eval_limit, class_map=class_map)
        lat = bench(artifact.path, data, runs=m.bench_runs, warmup=5)
        params, gflops = model_stats(artifact.source, artifact.imgsz)
        return {"map50_95": acc.map50_95, "map50": acc.map50, "latency_ms": lat.median, "params": params,
                "gflops": gflops, "evaluator": acc.evaluator}

    key = {"artifact": artifact.path, "data": DataInput(data),
           "measure": {"bench_runs": m.bench_runs, "eval_limit": m.eval_limit}, "metric": METRIC}
    r = ctx.stages.run(f"measure {artifact.label}", key, [artifact.path], run)
    ctx.log(f"      {artifact.label:45s} mAP50-95 {r['map50_95']:.3f}  mAP50 {r['map50']:.3f}  "
            f"inference {r['latency_ms']['inference']:.1f} ms")
    backend = r.get("evaluator") or ("tensorrt" if artifact.format == "engine" else "onnxruntime CPU")
    return ArtifactResult(artifact, artifact.path.stat().st_size / 1e6, r["params"], r["gflops"], r["map50_95"],
                          r["map50"], r["latency_ms"], backend)


def eval_images(ctx: StageContext, data: Path) -> tuple[int, int]:
    """How many validation images every mAP is measured on (the first ``measure.eval_limit``), and of how many."""
    from ..data.dataset import load_dataset  # lazy: cv2 (only the measure stages need it)

    total = len(load_dataset(data).images("val"))
    limit = ctx.cfg.measure.eval_limit
    return min(limit or total, total), total


def robustness(ctx: StageContext, artifact: Artifact, data: Path, clean: float) -> Robustness:
    """mAP50-95 of ``artifact`` under the corruptions of ``measure.corrupt``, on the images its ``clean`` mAP50-95
    was measured on."""
    from ..export.evaluate import UnmappedClassesWarning, evaluate, open_detector  # lazy: cv2 (only this stage)

    m = ctx.cfg.measure
    class_map = teacher_class_map(ctx, artifact.source, data) if artifact.is_teacher else None

    def run() -> dict:
        det = open_detector(artifact.path, imgsz=artifact.imgsz)

        def score(corrupt: tuple[str, int] | None) -> float:
            with warnings.catch_warnings():  # as in measure()
                warnings.simplefilter("ignore", UnmappedClassesWarning)
                return evaluate(det, data, limit=m.eval_limit, class_map=class_map, corrupt=corrupt).map50_95

        return score_under(score, parse_spec(m.corrupt), clean,
                           progress=lambda line: ctx.log(f"      {line}")).as_dict()

    key = {"artifact": artifact.path, "data": DataInput(data), "corrupt": m.corrupt, "eval_limit": m.eval_limit,
           "metric": METRIC}
    r = Robustness.from_dict(ctx.stages.run(f"robustness {artifact.label}", key, [artifact.path], run))
    ctx.log(f"      {artifact.label:45s} clean {r.clean:.3f}  mPC {r.mpc:.3f}  (rPC {100 * r.rpc:.1f}%)")
    return r


def teacher_class_map(ctx: StageContext, teacher_pt: Path, data: Path) -> dict[int, int] | None:
    """How the teacher's detections count on a dataset of other classes (None: same classes); the report says so."""
    score_map, described = teacher_score_map(teacher_pt, data, ctx.cfg.distill.class_map or None)
    if score_map is not None:
        ctx.note("The teacher's mAP counts its detections of these classes as the dataset's classes "
                 f"({described}); its other classes are not scored.")
    return score_map


def teacher_score_map(teacher_pt: Path, data: str | Path, class_map: dict | None = None
                      ) -> tuple[dict[int, int] | None, str]:
    """The teacher's class ids -> the dataset's, for scoring a teacher of other classes on it (None: the same
    classes), and the mapping in words. Any detection checkpoint of those classes is scored alike (an INT8
    fine-tuned one included: only its class names are read)."""
    model, _ = load_detection_checkpoint(teacher_pt, role="model", tasks=("detect", "segment", "pose", "obb"))
    mapping, cm = score_map(class_names(model), data, class_map)
    return mapping, describe_scoring(cm)


def demo(ctx: StageContext, artifact: Artifact, data: Path) -> None:
    """The headless demo on a video of ``demo.frames`` validation images; its summary becomes a note."""
    frames = ctx.cfg.demo.frames
    if not frames:
        return
    from ..data.dataset import load_dataset  # lazy: cv2 (only this stage needs it)
    from ..demo.app import run_demo

    def run() -> str:
        images = load_dataset(data).images("val")[:frames]
        video = video_from_images(images, ctx.work / "demo-input.mp4")
        summary = run_demo(artifact.path, str(video), show=False, record=ctx.work / "demo.mp4",
                           save_json=ctx.work / "demo.jsonl", log=lambda line: None)
        return summary.format()

    key = {"artifact": artifact.path, "frames": frames, "data": DataInput(data)}
    text = ctx.stages.run("demo (headless, on a video of the val images)", key, [ctx.work / "demo.mp4"], run)
    lines = "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())  # the summary's lines apart
    ctx.note(f"Demo ({artifact.path.name}, headless, recorded to demo.mp4): {lines}")
