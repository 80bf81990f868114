"""StudentTrainer's model handling: a pruned student is trained as it is, with the dataset's class count."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from detdistill.models import detect_head
from detdistill.distill.student_trainer import differs_from_yaml, set_class_count


def _model(nc: int = 80) -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=nc, verbose=False)


def test_only_other_layer_shapes_count_as_a_different_architecture():
    model = _model()
    assert not differs_from_yaml(model, _model())
    assert not differs_from_yaml(model, _model(nc=5))  # a new class count is ultralytics' usual fine-tuning
    narrowed = copy.deepcopy(model)
    conv = narrowed.model[0].conv
    conv.weight = torch.nn.Parameter(conv.weight[:8].clone())
    assert differs_from_yaml(narrowed, _model())
    marked = copy.deepcopy(model)
    marked.yaml["pruned"] = True
    assert differs_from_yaml(marked, _model())


def test_new_class_layers_start_from_the_mapped_classes():
    model = _model()
    head = detect_head(model)
    old = [copy.deepcopy(seq[-1]) for seq in head.cv3]
    sources = [(2, 7), (5,), ()]  # e.g. Ambulance <- car, truck; Bus <- bus; a class the old model lacks
    set_class_count(model, 3, sources)
    assert (head.nc, head.no) == (3, 3 + 4 * head.reg_max) and model.yaml["nc"] == 3
    for before, seq in zip(old, head.cv3):
        new = seq[-1]
        assert new.out_channels == 3
        torch.testing.assert_close(new.weight[0], before.weight[[2, 7]].mean(0))
        torch.testing.assert_close(new.bias[1], before.bias[5])
        assert new.bias[2] < -4  # the prior: a rare positive, not the teacher's rows
    model.eval()
    out = model(torch.zeros(1, 3, 64, 64))
    assert (out[0] if isinstance(out, (list, tuple)) else out).shape[1] == 4 + 3


def _bn_means(model) -> torch.Tensor:
    return torch.cat([m.running_mean.float() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])


@pytest.mark.parametrize("mode", ["frozen", "frozen+kd", "training"])
def test_frozen_bn_keeps_the_inherited_statistics(mode, teacher_pt, coco8_yaml, tmp_path):
    """One epoch on coco8 from the COCO teacher's weights: with frozen BatchNorm (plain or distilled) the running
    statistics are the teacher's while the weights train; in ultralytics' usual training mode they move."""
    from ultralytics import YOLO

    from detdistill.distill import DistillationTrainer
    from detdistill.distill.student_trainer import StudentTrainer

    student = tmp_path / "student.pt"
    shutil.copy(teacher_pt, student)
    before = YOLO(str(student)).model
    trainer = {"frozen": StudentTrainer.with_frozen_bn(), "training": StudentTrainer,
               "frozen+kd": DistillationTrainer.configure(teacher_pt, "default", None, freeze_bn=True)}[mode]
    YOLO(str(student)).train(trainer=trainer, data=str(coco8_yaml), epochs=1, imgsz=64, batch=4, workers=0,
                             plots=False, val=False, amp=False, warmup_epochs=0, optimizer="AdamW", lr0=0.01,
                             project=str(tmp_path), name="run", exist_ok=True)
    after = YOLO(str(tmp_path / "run" / "weights" / "last.pt")).model
    moved = (_bn_means(after) - _bn_means(before)).abs().max().item()
    changed = max((a.float() - b.float()).abs().max().item() for a, b in
                  zip(after.parameters(), before.parameters()) if a.ndim == 4)
    print(f"{mode}: BatchNorm means moved by {moved:.2e}, conv weights by {changed:.2e}")
    assert changed > 1e-3  # the weights trained
    if mode == "training":
        assert moved > 1e-2
    else:
        assert moved < 1e-3
