#!/usr/bin/env python
"""How closely a fake-quantized PyTorch model and its exported Q/DQ ONNX agree in accuracy.

QAT and QAD train with ModelOpt's INT8 fake quantization in PyTorch; what ships is the Q/DQ ONNX that
``detdistill export`` writes from the checkpoint, scored as simulated TensorRT INT8 (Q/DQ as float
operations). This scores both on both halves of a track's val images and gives the paired difference
(PyTorch - ONNX) on each half with a 95% bootstrap interval over its images (``detdistill.export.compare``).

Without ``--weights`` it builds the model that QAT and QAD start from: the teacher fixture with ModelOpt's
INT8 quantizers inserted by ultralytics' ``prepare_qat`` and calibrated on 8 batches of 8 train images, no
training; the FP32 teacher is scored beside it.

    YOLO_OFFLINE=1 python tools/bench_qdq_fidelity.py --imgsz 320
    YOLO_OFFLINE=1 python tools/bench_qdq_fidelity.py --weights runs/qad/weights/best.pt --imgsz 320
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_int8_cpu import TEACHER, TRACKS  # noqa: E402  (its fixtures, tracks and teacher)

CALIB_BATCHES, CALIB_BATCH = 8, 8  # ultralytics' QAT calibrates on 8 training batches


def calibrated_teacher(out: Path, calib: list[Path], imgsz: int) -> Path:
    """The teacher with ModelOpt INT8 fake quantization calibrated on ``calib``, saved as a QAT checkpoint."""
    import numpy as np
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import prepare_qat, qat_state, strip_qat

    from detdistill.data.images import read_bgr
    from detdistill.runtime.letterbox import preprocess

    model = YOLO(str(TEACHER)).model.float()
    batches = [torch.from_numpy(np.concatenate([preprocess(read_bgr(p), (imgsz, imgsz))[0]
                                                for p in calib[i:i + CALIB_BATCH]]))
               for i in range(0, CALIB_BATCHES * CALIB_BATCH, CALIB_BATCH)]
    model = prepare_qat(model, batches, lambda batch: batch, batches=CALIB_BATCHES)
    state = qat_state(model)
    saved = copy.deepcopy(model).half()  # as ultralytics' trainer saves a checkpoint
    strip_qat(saved)
    torch.save({"epoch": -1, "model": None, "ema": saved, "modelopt": state, "train_args": {"imgsz": imgsz}}, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="a QAT/QAD checkpoint (default: the calibrated teacher)")
    ap.add_argument("--track", choices=tuple(TRACKS), default="coco-mini")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()

    from detdistill.data.dataset import load_dataset
    from detdistill.data.splits import split_halves
    from detdistill.export.compare import paired_gain
    from detdistill.export.evaluate import evaluate
    from detdistill.export.onnx_export import export_onnx
    from detdistill.pipeline.measure_stages import teacher_score_map
    from detdistill.runtime.cpu import instruction_set

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_qdq_fidelity_"))
    work.mkdir(parents=True, exist_ok=True)
    data = TRACKS[args.track]
    dataset = load_dataset(data)
    pt = args.weights
    if pt is None:
        need = CALIB_BATCHES * CALIB_BATCH
        pt = calibrated_teacher(work / "teacher-int8-calibrated.pt", dataset.images("train")[:need], args.imgsz)
    onnx_path = export_onnx(pt, work / f"{pt.stem}.qdq.onnx", imgsz=args.imgsz)
    class_map = teacher_score_map(pt, data)[0]
    halves = split_halves(dataset.images("val"))
    models = {"PyTorch fake-quantized": pt, "exported Q/DQ ONNX, simulated": onnx_path}
    if args.weights is None:
        models = {"FP32 teacher": TEACHER, **models}
    scores = {name: {h: evaluate(m, data, files=files, imgsz=args.imgsz, class_map=class_map, keep_records=True)
                     for h, files in halves.items()} for name, m in models.items()}
    print(f"\n{pt.name} at {args.imgsz} on {args.track} val, tuning half / test half; CPU {instruction_set()}\n")
    print("| model | evaluator | mAP50-95 tuning / test |")
    print("|---|---|---|")
    for name, r in scores.items():
        print(f"| {name} | {r['test'].evaluator} | {r['tune'].map50_95:.3f} / {r['test'].map50_95:.3f} |")
    fq, qdq = scores["PyTorch fake-quantized"], scores["exported Q/DQ ONNX, simulated"]
    for h in halves:
        print(f"PyTorch - ONNX, {h} half ({len(halves[h])} images): "
              f"{paired_gain([fq[h].records], [qdq[h].records])}")


if __name__ == "__main__":
    main()
