"""The end-to-end quickstart: shrink, deploy and run, offline, on data and models it makes itself.

Stages (each cached in the work folder and skipped when its output exists, so a rerun resumes):

1. data     a generated shapes dataset (no download)
2. teacher  a YOLOv8n trained on it (no pretrained weights ship with any installed package)
3. student  a YOLOv8n at half its width (a third of its parameters), trained without KD and with the
            default recipe
4. export   the distilled student to ONNX, then an INT8 ONNX calibrated on the training images
5. eval     mAP50-95 / mAP50 and per-stage latency of every artifact through ``detdistill.runtime``
6. demo     the live demo, headless, on a video made from the validation images (no camera needed)

Then ``report.md`` sums it up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TRAIN = dict(
    imgsz=128, batch=8, workers=1, optimizer="AdamW", lr0=0.003, warmup_epochs=1, close_mosaic=5, plots=False, seed=0
)


@dataclass
class QuickstartConfig:
    workdir: Path = Path("runs/quickstart")
    teacher_epochs: int = 15
    student_epochs: int = 15
    n_train: int = 300
    n_val: int = 60
    demo_frames: int = 60

    @classmethod
    def tiny(cls, workdir: Path) -> QuickstartConfig:
        """A minutes-long variant for tests: every stage runs, accuracy is not the point."""
        return cls(workdir, teacher_epochs=1, student_epochs=1, n_train=24, n_val=8, demo_frames=8)


def _train(student: str, data: Path, out: Path, epochs: int, teacher: Path | None = None) -> Path:
    """Train (with KD when ``teacher`` is given) unless ``out/weights/best.pt`` exists; return best.pt."""
    best = out / "weights" / "best.pt"
    if best.exists():
        return best
    from ultralytics import YOLO

    args = dict(DEFAULT_TRAIN, epochs=epochs, project=str(out.parent), name=out.name, exist_ok=True)
    if teacher is None:
        YOLO(student).train(data=str(data), **args)
    else:
        from .distill import api

        api.train(student, teacher, data, "default", **args)
    return best


def _video_from_images(images: list[Path], out: Path, fps: float = 10.0) -> Path:
    """A video file made of ``images`` (the demo's stand-in for a camera)."""
    import cv2

    if out.exists():
        return out
    frames = [cv2.imread(str(p)) for p in images]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.resize(frame, (w, h)))
    writer.release()
    return out


def run_quickstart(cfg: QuickstartConfig, log: Callable[[str], None] = print) -> Path:
    """Run every stage; return the path of ``report.md``."""
    from .data.shapes import make_shapes_dataset
    from .demo.app import run_demo
    from .distill.students import scaled_model_yaml
    from .export.bench import bench
    from .export.evaluate import evaluate
    from .export.onnx_export import export_onnx
    from .export.quantize import quantize_onnx

    work = cfg.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    imgsz = DEFAULT_TRAIN["imgsz"]

    log("[1/6] data: generated shapes dataset")
    data = make_shapes_dataset(work / "data", n_train=cfg.n_train, n_val=cfg.n_val)

    log(f"[2/6] teacher: yolov8n trained for {cfg.teacher_epochs} epochs")
    teacher = _train("yolov8n.yaml", data, work / "teacher", cfg.teacher_epochs)

    student_cfg = str(scaled_model_yaml("yolov8", width=0.125, out=work / "yolov8n-half.yaml"))
    log(f"[3/6] student: yolov8n at 1/2 width, {cfg.student_epochs} epochs without KD, then with the default recipe")
    plain = _train(student_cfg, data, work / "student-no-kd", cfg.student_epochs)
    distilled = _train(student_cfg, data, work / "student-kd", cfg.student_epochs, teacher=teacher)

    log("[4/6] export: ONNX (parity-checked) and INT8 ONNX calibrated on the training images")
    val_images = sorted((work / "data" / "images" / "val").glob("*.jpg"))
    onnx_fp32 = work / "student-kd.onnx"
    if not onnx_fp32.exists():
        export_onnx(distilled, onnx_fp32, imgsz=imgsz, parity_images=val_images[:4])
    onnx_int8 = work / "student-kd-int8.onnx"
    if not onnx_int8.exists():
        quantize_onnx(onnx_fp32, work / "data" / "images" / "train", onnx_int8, target="cpu", num_images=min(cfg.n_train, 200))

    log("[5/6] eval: accuracy and latency of every artifact through detdistill.runtime (ONNX Runtime, CPU)")
    rows = []
    for name, artifact in [("teacher (.pt)", teacher), ("student, no KD (.pt)", plain), ("student, KD (.pt)", distilled),
                           ("student, KD, FP32 ONNX", onnx_fp32), ("student, KD, INT8 ONNX", onnx_int8)]:
        acc = evaluate(artifact, data, imgsz=imgsz)
        row = {"artifact": name, "file": artifact.name, "mAP50-95": acc.map50_95, "mAP50": acc.map50,
               "MB": artifact.stat().st_size / 1e6}
        if artifact.suffix == ".onnx":
            lat = bench(artifact, work / "data" / "images" / "val", runs=50, warmup=5)
            row.update({f"{k} ms": v for k, v in lat.median.items()})
        rows.append(row)
        log(f"      {name:26s} mAP50-95 {acc.map50_95:.3f}  mAP50 {acc.map50:.3f}")
    (work / "results.json").write_text(json.dumps(rows, indent=2))

    log("[6/6] demo: headless live demo on a video of the validation images")
    video = _video_from_images(val_images[: cfg.demo_frames], work / "demo-input.mp4")
    summary = run_demo(onnx_int8, str(video), show=False, record=work / "demo.mp4", save_json=work / "demo.jsonl",
                       log=lambda line: None)
    report = work / "report.md"
    report.write_text(_report(rows, summary.format(), cfg))
    log(f"report: {report}")
    return report


def _report(rows: list[dict], demo_summary: str, cfg: QuickstartConfig) -> str:
    stages = [k for k in rows[-1] if k.endswith(" ms")]
    head = ["artifact", "mAP50-95", "mAP50", "size MB", *stages]
    lines = ["# detdistill quickstart report", "",
             f"Generated shapes data ({cfg.n_train} train / {cfg.n_val} val images), imgsz {DEFAULT_TRAIN['imgsz']}, "
             f"teacher {cfg.teacher_epochs} epochs, students {cfg.student_epochs} epochs; CPU, ONNX Runtime.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["artifact"], f"{r['mAP50-95']:.3f}", f"{r['mAP50']:.3f}", f"{r['MB']:.2f}"]
        cells += [f"{r[s]:.1f}" if s in r else "" for s in stages]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Demo (INT8 ONNX, headless, recorded to demo.mp4):", "", "```", demo_summary, "```", ""]
    return "\n".join(lines)
