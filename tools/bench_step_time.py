#!/usr/bin/env python3
"""Compute-only cost of distillation: time of one training step (forward, loss, backward, SGD step)
of the plain student, under ultralytics' built-in ``DistillationModel``, and under detdistill recipes,
on the same random batches (no data loading). Prints the median step time and its ratio to no KD.
On CPU, torch runs with the thread count ultralytics' trainer sets (one core fewer than the machine has,
up to 8), so a distiller's use of the spare core shows as it does in training.

    YOLO_OFFLINE=1 python tools/bench_step_time.py --student quarter --imgsz 320 --batch 16 --steps 20 \\
        --methods none,ultralytics,default,default:serial,cwd
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
TEACHER = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures")) / "weights" / "yolov8n-coco.pt"


def build(method: str, student_cfg: str, teacher: str, imgsz: int, device: str):
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.distill_model import DistillationModel
    from ultralytics.nn.tasks import DetectionModel

    from detdistill.distill import build_class_map, load_recipe, load_teacher
    from detdistill.distill.model import KDModel
    from detdistill.models import class_names

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


def random_batch(imgsz: int, batch: int, device: str) -> dict:
    """A fixed random batch with four boxes per image."""
    g = torch.Generator().manual_seed(0)
    n = 4 * batch
    return {
        "img": torch.rand(batch, 3, imgsz, imgsz, generator=g).to(device),
        "batch_idx": torch.arange(batch).repeat_interleave(4).float().to(device),
        "cls": torch.randint(0, 80, (n, 1), generator=g).float().to(device),
        "bboxes": (torch.rand(n, 4, generator=g) * 0.4 + 0.2).to(device),
    }


class Stepper:
    """One method's model and optimizer; :meth:`step` times one training step. A ``:serial`` suffix on a
    detdistill recipe keeps its teacher in the training thread (``DETDISTILL_TEACHER_THREAD=0``)."""

    def __init__(self, method: str, student_cfg: str, teacher: str, imgsz: int, device: str):
        from detdistill.distill.teacher import TEACHER_THREAD_ENV

        name, _, variant = method.partition(":")
        torch.manual_seed(0)
        self.model = build(name, student_cfg, teacher, imgsz, device).to(device).train()
        self.opt = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        self.env = {TEACHER_THREAD_ENV: "0"} if variant == "serial" else {}
        self.device = device

    def step(self, data: dict) -> float:
        with mock.patch.dict(os.environ, self.env):
            if self.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(device_type=self.device.split(":")[0], enabled=self.device != "cpu"):
                loss, _ = self.model(dict(data))
            self.opt.zero_grad()
            loss.sum().backward()
            self.opt.step()
            if self.device != "cpu":
                torch.cuda.synchronize()
            return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", default="quarter", help="'quarter' (yolov8n at 1/4 width), a model YAML or a .pt")
    ap.add_argument("--teacher", default=str(TEACHER))
    ap.add_argument("--methods", default="none,ultralytics,default,cwd,logit,ld",
                    help="comma-separated; the first is the baseline; a recipe with :serial keeps its teacher in the training thread")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from ultralytics.utils import NUM_THREADS

    from detdistill.distill.students import scaled_model_yaml

    if args.device == "cpu":
        torch.set_num_threads(NUM_THREADS)  # what ultralytics' trainer does on CPU

    cfg = str(scaled_model_yaml("yolov8", width=0.0625)) if args.student == "quarter" else args.student
    print(f"student {args.student}, teacher {Path(args.teacher).name}, imgsz {args.imgsz}, batch {args.batch}, "
          f"{args.device} ({torch.get_num_threads()} torch threads)")
    methods = args.methods.split(",")
    steppers = {m: Stepper(m, cfg, args.teacher, args.imgsz, args.device) for m in methods}
    data = random_batch(args.imgsz, args.batch, args.device)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(args.steps + 3):  # methods take turns, step by step, so that drifts in CPU speed hit all alike
        for m, stepper in steppers.items():
            t = stepper.step(data)
            if i >= 3:  # warm-up
                times[m].append(t)
    base = statistics.median(times[methods[0]])
    for m in methods:
        t = statistics.median(times[m])
        print(f"{m:14s} {1000 * t:8.1f} ms/step   {t / base:.2f}x {methods[0]}", flush=True)


if __name__ == "__main__":
    main()
