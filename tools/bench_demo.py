#!/usr/bin/env python3
"""End-to-end demo throughput and per-stage latency with the ONNX Runtime backend.

Runs the real demo loop (``detdistill.demo.run_demo``, headless; pipelined, or serial with
``--sync``) on a generated 640x480 clip for FP32 ONNX models at each image size and reports FPS,
p50/p95 end-to-end latency, the mean ms of every stage, and the share of the frame time spent
outside inference (target <= 15%). For the loop at Jetson engine speed (a simulated engine) see
``tools/bench_demo_pipeline.py``.

    python tools/bench_demo.py                          # exports the teacher fixture at 320 and 640
    python tools/bench_demo.py --onnx a.onnx b.onnx     # your own models
    python tools/bench_demo.py --frames 200 --record --json bench.json
    python tools/bench_demo.py --sync                   # the serial loop

The teacher is read from ../shared/fixtures/weights/yolov8n-coco.pt (copied to a temporary
folder first; exporting needs torch, the demo itself does not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from detdistill.demo import run_demo  # noqa: E402
from detdistill.demo.synthetic import write_clip  # noqa: E402

TEACHER = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures")) / "weights" / "yolov8n-coco.pt"


def export_models(sizes: list[int], folder: Path) -> list[Path]:
    """FP32 ONNX of the teacher fixture at each size (detdistill.export)."""
    from detdistill.export.onnx_export import export_onnx

    if not TEACHER.exists():
        raise SystemExit(f"{TEACHER} not found: pass --onnx MODEL ...")
    weights = folder / "teacher.pt"
    shutil.copy(TEACHER, weights)
    return [Path(export_onnx(weights, folder / f"teacher-{s}.onnx", imgsz=s)) for s in sizes]


def bench(model: Path, clip: Path, frames: int, warmup: int, record: Path | None, sync: bool = False) -> dict:
    from detdistill.runtime import Detector

    detector = Detector(str(model))
    run_demo(detector, str(clip), show=False, max_frames=warmup, sync=sync, log=lambda m: None)   # warm-up
    summary = run_demo(detector, str(clip), show=False, max_frames=frames, record=record, sync=sync,
                       log=lambda m: None)
    frame_ms = 1000.0 / summary.mean_fps
    inference = summary.stage_ms["inference"]
    return {
        "model": model.name,
        "imgsz": list(detector.imgsz),
        "frames": summary.frames,
        "fps": summary.mean_fps,
        "frame_ms": frame_ms,
        "latency_p50_ms": summary.latency_p50_ms,
        "latency_p95_ms": summary.latency_p95_ms,
        "stage_ms": summary.stage_ms,
        "overhead_ms": frame_ms - inference,
        "overhead_fraction": (frame_ms - inference) / frame_ms,
        "engine_busy": summary.engine_busy,
    }


def table(rows: list[dict]) -> str:
    stages = list(rows[0]["stage_ms"])
    head = ["model", "imgsz", "FPS", "frame ms", "p50 ms", "p95 ms", *stages, "non-inference share"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], "x".join(map(str, r["imgsz"])), f"{r['fps']:.1f}", f"{r['frame_ms']:.1f}",
                 f"{r['latency_p50_ms']:.1f}", f"{r['latency_p95_ms']:.1f}",
                 *[f"{r['stage_ms'][s]:.2f}" for s in stages], f"{100 * r['overhead_fraction']:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", nargs="*", type=Path, help="ONNX models (default: export the teacher)")
    parser.add_argument("--sizes", nargs="*", type=int, default=[320, 640], help="image sizes to export")
    parser.add_argument("--frames", type=int, default=150, help="measured frames per model")
    parser.add_argument("--warmup", type=int, default=15, help="warm-up frames per model")
    parser.add_argument("--record", action="store_true", help="also record the annotated video (adds encoding)")
    parser.add_argument("--sync", action="store_true", help="the serial loop (default: the pipelined one)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = args.onnx or export_models(args.sizes, folder)
        clip = write_clip(folder / "clip.mp4", frames=args.frames, size=(640, 480))
        rows = [bench(m, clip, args.frames, args.warmup, folder / f"{m.stem}.mp4" if args.record else None, args.sync)
                for m in models]
    import onnxruntime

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, onnxruntime {onnxruntime.__version__}"
    print(f"demo on a 640x480 clip, headless, {'serial' if args.sync else 'pipelined'} loop, {args.frames} frames, "
          f"{machine}{', recording' if args.record else ''}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "record": args.record, "sync": args.sync,
                                         "results": rows}, indent=2))


if __name__ == "__main__":
    main()
