"""Teachers of another YOLO family than the student (v8, 11, 26, and v10): one real KD step on coco8 images
through KDModel with the class-score and box recipe (logit-box), a feature recipe (cwd) and the default
(attention transfer), and the pairings that are refused. Models are built from ultralytics' YAML configs, so no weights are needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

PAIRS = [  # (teacher, student)
    ("yolo11n.yaml", "yolov8n.yaml"),
    ("yolo26n.yaml", "yolov8n.yaml"),  # NMS-free teacher without DFL (reg_max 1)
    ("yolov8n.yaml", "yolo26n.yaml"),  # DFL teacher, NMS-free student without DFL
    ("yolov10n.yaml", "yolov8n.yaml"),  # NMS-free teacher with DFL
]


@pytest.fixture(scope="module")
def batch(coco8_yaml) -> dict:
    """The four coco8 train images at 160x160 with their labels (a plain resize keeps normalised YOLO boxes valid)."""
    import cv2
    import numpy as np

    files = sorted((coco8_yaml.parent / "images" / "train").glob("*.jpg"))
    images, idx, cls, boxes = [], [], [], []
    for i, f in enumerate(files):
        images.append(cv2.resize(cv2.imread(str(f)), (160, 160))[:, :, ::-1])
        label = coco8_yaml.parent / "labels" / "train" / f"{f.stem}.txt"
        for row in np.loadtxt(label, ndmin=2):
            idx.append(i), cls.append(row[:1]), boxes.append(row[1:5])
    return {
        "img": torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).float() / 255,
        "batch_idx": torch.tensor(idx, dtype=torch.float32),
        "cls": torch.tensor(np.array(cls), dtype=torch.float32),
        "bboxes": torch.tensor(np.array(boxes), dtype=torch.float32),
    }


def _model(cfg: str) -> nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel(cfg, nc=80, verbose=False)


def _teacher(cfg: str, images: torch.Tensor) -> nn.Module:
    """A frozen teacher of architecture ``cfg``. Freshly initialised, its eval-mode features shrink towards zero
    layer by layer (BatchNorm divides by a running variance of 1); its BatchNorm statistics are estimated on the
    batch first, so that its features have the scale a trained teacher's have."""
    model = _model(cfg)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass sets the batch's statistics
    with torch.no_grad():
        model.train()(images)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _kd_model(student: nn.Module, teacher: nn.Module, recipe):
    from ultralytics.cfg import get_cfg

    from detdistill.distill import build_class_map, load_recipe
    from detdistill.distill.model import KDModel

    student.args = get_cfg()
    names = [str(i) for i in range(80)]  # both built with the 80 COCO ids
    return KDModel(student, teacher, load_recipe(recipe), build_class_map(names, names), {}).train()


@pytest.mark.parametrize("recipe", ["logit-box", "cwd", "default"])
@pytest.mark.parametrize(("teacher_cfg", "student_cfg"), PAIRS, ids=lambda c: Path(c).stem)
def test_cross_family_kd_step(batch, teacher_cfg, student_cfg, recipe):
    from detdistill.distill.box import DecodedBoxDistillation, LocalizationDistillation
    from detdistill.models import detect_head

    teacher, student = _teacher(teacher_cfg, batch["img"]), _model(student_cfg)
    model = _kd_model(student, teacher, recipe)
    if recipe == "logit-box":  # LD where both heads have DFL with one reg_max, decoded boxes otherwise
        dfl = detect_head(teacher).reg_max == detect_head(student).reg_max == 16
        assert isinstance(model.distiller.losses["box"], LocalizationDistillation if dfl else DecodedBoxDistillation)
        from detdistill.distill.trainer import _built_as  # what the training log names the box loss as

        assert _built_as("box", model.distiller.losses["box"]) == ("box -> ld" if dfl else "box -> box_decoded")
    loss, items = model(dict(batch))
    kd = {k: float(v) for k, v in items.items() if k.startswith("kd_")}
    assert torch.isfinite(loss).all() and loss[: -len(kd)].sum() > 0  # the student's own loss on the labels
    assert kd and all(v > 0 for v in kd.values()), kd
    loss[-len(kd):].sum().backward()  # the KD terms alone reach the student
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    if recipe == "cwd":
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.distiller.adapters.parameters())


def test_ld_is_refused_for_a_head_without_dfl(batch):
    from detdistill.distill import RecipeError

    with pytest.raises(RecipeError, match=r"needs DFL heads .*teacher 1, student 16.*use type 'box'"):
        _kd_model(_model("yolov8n.yaml"), _teacher("yolo26n.yaml", batch["img"]), "ld")


def test_teacher_of_another_pyramid_is_refused(batch):
    """A P3-P6 YOLO26 teacher (strides 8-64) cannot teach a P3-P5 YOLOv8 student: no anchor grid in common at P6."""
    with pytest.raises(ValueError, match=r"teacher strides \[8.0, 16.0, 32.0, 64.0\] differ from the student's"):
        _kd_model(_model("yolov8n.yaml"), _teacher("yolo26n-p6.yaml", batch["img"][..., :128, :128]), "default")
