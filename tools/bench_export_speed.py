#!/usr/bin/env python
"""FP32 ONNX inference time of detdistill's export against ultralytics' own ONNX export of the same weights.

Both files come from the same ``.pt`` at each ``--imgsz`` (ultralytics: ``YOLO(pt).export(format="onnx")``
with its defaults; detdistill: ``export_onnx``, whose parity check against PyTorch runs on two photos) and
are timed by the runtime's ONNX Runtime backend on the CPU, on real coco-mini val photos letterboxed to the
input size, taking turns call by call, so that a slow spell of a shared machine falls on both alike. Prints
the median of each round and the ratio detdistill / ultralytics with its range over the rounds. Run it on an
otherwise idle machine.

    YOLO_OFFLINE=1 python tools/bench_export_speed.py --imgsz 320,640 --rounds 5 --runs 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

import numpy as np  # noqa: E402

from detdistill.data.images import read_bgr  # noqa: E402
from detdistill.export.onnx_export import default_parity_images, export_onnx  # noqa: E402
from detdistill.runtime.backends.onnxruntime import OrtBackend  # noqa: E402
from detdistill.runtime.letterbox import preprocess  # noqa: E402
from bench_demo_pipeline import cpu_info  # noqa: E402  (tools/: CPU model, instruction set, cores)

FIX = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures"))
FRAMES = 16


def ultralytics_onnx(pt: Path, imgsz: int, work: Path) -> Path:
    """ultralytics' ONNX export of ``pt`` at ``imgsz``, with its default settings."""
    from ultralytics import YOLO

    out = Path(YOLO(str(pt)).export(format="onnx", imgsz=imgsz))
    return Path(shutil.move(out, work / f"ultralytics-{imgsz}.onnx"))


def round_medians(backends: dict[str, OrtBackend], inputs: list[np.ndarray], runs: int) -> dict[str, float]:
    """Median inference milliseconds of each backend over ``runs`` calls, the backends taking turns call by call
    (a slow spell of a shared machine falls on both), cycling through ``inputs`` after 5 warm-up calls each."""
    for backend in backends.values():
        for x in inputs[:5]:
            backend.infer(x)
    times: dict[str, list[float]] = {name: [] for name in backends}
    for i in range(runs):
        x = inputs[i % len(inputs)]
        for name, backend in backends.items():
            t = time.perf_counter()
            backend.infer(x)
            times[name].append(1000 * (time.perf_counter() - t))
    return {name: statistics.median(ms) for name, ms in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=FIX / "weights" / "yolov8n-coco.pt")
    ap.add_argument("--imgsz", default="320,640", help="input sizes, comma separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=100, help="timed runs per model per round")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="export-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    pt = work / args.weights.name
    shutil.copy(args.weights, pt)  # ultralytics writes its export beside the weights; the fixtures are read-only
    photos = [read_bgr(p) for p in sorted((FIX / "coco-mini" / "images" / "val").glob("*.jpg"))[:FRAMES]]
    cpu = cpu_info()
    print(f"{cpu['cpus']}-core {cpu['model']}, instruction set {cpu['isa']}; {args.weights.name}; "
          f"{args.rounds} rounds of {args.runs} runs per model; median inference ms (ONNX Runtime, CPU)", flush=True)
    for imgsz in (int(s) for s in args.imgsz.split(",")):
        models = {"ultralytics": ultralytics_onnx(pt, imgsz, work),
                  "detdistill": export_onnx(pt, work / f"detdistill-{imgsz}.onnx", imgsz=imgsz,
                                            parity_images=default_parity_images())}
        backends = {name: OrtBackend(path, device="cpu") for name, path in models.items()}
        inputs = [preprocess(p, (imgsz, imgsz))[0] for p in photos]
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(args.rounds):
            for name, ms in round_medians(backends, inputs, args.runs).items():
                times[name].append(ms)
            ratio = times["detdistill"][-1] / times["ultralytics"][-1]
            print(f"imgsz {imgsz} round {r + 1}/{args.rounds}: ultralytics {times['ultralytics'][-1]:.1f} ms  "
                  f"detdistill {times['detdistill'][-1]:.1f} ms  ({ratio:.2f}x)", flush=True)
        ratios = [d / u for d, u in zip(times["detdistill"], times["ultralytics"])]
        print(f"imgsz {imgsz}: ultralytics {statistics.median(times['ultralytics']):.1f} ms, detdistill "
              f"{statistics.median(times['detdistill']):.1f} ms; detdistill / ultralytics per round "
              f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]\n", flush=True)


if __name__ == "__main__":
    main()
