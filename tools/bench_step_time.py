#!/usr/bin/env python3
"""Compute-only cost of distillation: time of one training step (forward, loss, backward, SGD step)
of the plain student, under ultralytics' built-in ``DistillationModel``, and under detdistill recipes,
on the same random batches (no data loading). Prints the median step time and its ratio to no KD.

    YOLO_OFFLINE=1 python tools/bench_step_time.py --student quarter --imgsz 320 --batch 16 --steps 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEACHER = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures")) / "weights" / "yolov8n-coco.pt"


def build(method: str, student_cfg: str, teacher: str, imgsz: int, device: str):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.distill_model import DistillationModel
    from ultralytics.nn.tasks import DetectionModel

    from detdistill.distill import build_class_map, load_recipe, load_teacher
    from detdistill.distill.model import KDModel
    from detdistill.distill.teacher import class_names

    if student_cfg.endswith(".pt"):  # e.g. a pruned student: its own checkpoint, trainable
        from ultralytics.nn.tasks import load_checkpoint

        student = load_checkpoint(student_cfg, device=device)[0].float()
        for p in student.parameters():
            p.requires_grad_(True)
    else:
        student = DetectionModel(student_cfg, nc=80, verbose=False).to(device)
    student.args = get_cfg(overrides={"imgsz": imgsz})
    if method == "none":
        return student
    if method == "ultralytics":
        return DistillationModel(teacher, student)
    t = load_teacher(teacher, device)
    cm = build_class_map(class_names(t), class_names(t))
    return KDModel(student, t, load_recipe(method), cm, {"teacher": teacher})


def time_steps(model, imgsz: int, batch: int, steps: int, device: str) -> float:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    n = 4 * batch
    data = {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(batch).repeat_interleave(4).float().to(device),
        "cls": torch.randint(0, 80, (n, 1), generator=g).float().to(device),
        "bboxes": (torch.rand(n, 4, generator=g) * 0.4 + 0.2).to(device),
    }
    times = []
    for i in range(steps + 3):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.split(":")[0], enabled=device != "cpu"):
            loss, _ = model(dict(data))
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize()
        if i >= 3:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="quarter", help="'quarter' (yolov8n at 1/4 width), a model YAML or a .pt")
    ap.add_argument("--teacher", default=str(TEACHER))
    ap.add_argument("--methods", default="none,ultralytics,default,cwd,logit,ld")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from detdistill.distill.students import scaled_model_yaml

    cfg = str(scaled_model_yaml("yolov8", width=0.0625)) if args.student == "quarter" else args.student
    base = None
    print(f"student {args.student}, teacher {Path(args.teacher).name}, imgsz {args.imgsz}, batch {args.batch}, {args.device}")
    for method in args.methods.split(","):
        torch.manual_seed(0)
        model = build(method, cfg, args.teacher, args.imgsz, args.device).to(args.device)
        t = time_steps(model, args.imgsz, args.batch, args.steps, args.device)
        base = base or t
        print(f"{method:12s} {1000 * t:8.1f} ms/step   {t / base:.2f}x no KD", flush=True)


if __name__ == "__main__":
    main()
