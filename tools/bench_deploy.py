#!/usr/bin/env python
"""README numbers for the deploy chain, on coco-mini val with the teacher fixture.

FP32 ONNX vs INT8 Q/DQ ONNX (CPU target, and the TensorRT-target Q/DQ run on ONNX Runtime CPU as an
accuracy proxy) mAP50-95 through detdistill.runtime, and ONNX Runtime CPU latency per stage.

    YOLO_OFFLINE=1 python tools/bench_deploy.py --imgsz 320
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from detdistill.export.bench import bench  # noqa: E402
from detdistill.export.evaluate import evaluate  # noqa: E402
from detdistill.export.onnx_export import default_parity_images, export_onnx  # noqa: E402
from detdistill.export.quantize import quantize_onnx  # noqa: E402

FIX = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--max-drop", type=float, default=0.007,
                    help="mAP budget for the layer search, measured on coco-mini *train* (val stays held out)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    data = FIX / "coco-mini" / "data.yaml"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_deploy_"))
    work.mkdir(parents=True, exist_ok=True)
    pt = work / "yolov8n-coco.pt"
    shutil.copy(FIX / "weights" / "yolov8n-coco.pt", pt)
    fp32 = export_onnx(pt, work / f"teacher{args.imgsz}.onnx", imgsz=args.imgsz,
                       parity_images=default_parity_images())
    calib = FIX / "coco-mini" / "images" / "train"
    rows = {}
    t0 = time.time()
    cpu = quantize_onnx(fp32, calib, work / "int8-cpu.onnx", target="cpu", method=args.method,
                        max_drop=args.max_drop, val_data=data, val_split="train", cache_dir=work)
    print(f"INT8 cpu: {time.time() - t0:.0f}s, float layers besides the head outputs: {cpu.float_layers or 'none'}")
    trt = quantize_onnx(fp32, calib, work / "int8-tensorrt.onnx", target="tensorrt", method=args.method,
                        cache_dir=work)
    for name, path in (("FP32 ONNX", fp32), ("INT8 Q/DQ cpu-target", cpu.path), ("INT8 Q/DQ tensorrt-target", trt.path)):
        r = evaluate(path, data)
        rows[name] = {"map": r.map50_95, "map50": r.map50, "path": path}
    for name in ("FP32 ONNX", "INT8 Q/DQ cpu-target", "INT8 Q/DQ tensorrt-target"):
        rows[name]["bench"] = bench(rows[name]["path"], FIX / "coco-mini" / "images" / "val", runs=args.runs,
                                    device="cpu")
    base = rows["FP32 ONNX"]
    print(f"\ncoco-mini val (128 images), imgsz {args.imgsz}, teacher yolov8n-coco.pt, ONNX Runtime CPU "
          f"({os.cpu_count()} cores), calibration: {args.method}, 208 coco-mini train images")
    print(f"| model | mAP50-95 | mAP50 | preprocess ms | inference ms | postprocess ms | inference vs FP32 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        b = r["bench"]
        ratio = b.median["inference"] / base["bench"].median["inference"]
        print(f"| {name} | {r['map']:.4f} | {r['map50']:.4f} | {b.median['preprocess']:.2f} | "
              f"{b.median['inference']:.2f} (p90 {b.p90['inference']:.2f}) | {b.median['postprocess']:.2f} | "
              f"{ratio:.2f}x |")
    drop = (base["map"] - rows["INT8 Q/DQ cpu-target"]["map"]) * 100
    print(f"\nINT8 (cpu target) drop: {drop:.2f} mAP50-95 points (target <= 1.0); "
          f"inference ratio {rows['INT8 Q/DQ cpu-target']['bench'].median['inference'] / base['bench'].median['inference']:.2f}x "
          "(target <= 0.7x)")


if __name__ == "__main__":
    main()
