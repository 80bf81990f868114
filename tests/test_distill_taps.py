"""Head taps and adapters across YOLO families and sizes, found by structure."""

from __future__ import annotations

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from detdistill.distill.adapters import ChannelAdapter, align_spatial
from detdistill.distill.taps import (
    HeadOutputs,
    head_outputs,
    join_levels,
    level_shift,
    probe_feature_channels,
    split_levels,
)
from detdistill.models import detect_head

FAMILIES = {  # yaml: (P3-P5 channels, reg_max)
    "yolov8n.yaml": ([64, 128, 256], 16),
    "yolov8s.yaml": ([128, 256, 512], 16),
    "yolo11n.yaml": ([64, 128, 256], 16),
    "yolo26n.yaml": ([64, 128, 256], 1),
}


@pytest.mark.parametrize("cfg", list(FAMILIES))
def test_taps_find_head_features_and_outputs(cfg):
    channels, reg_max = FAMILIES[cfg]
    model = DetectionModel(cfg, nc=5, verbose=False)
    head = detect_head(model)
    assert head.reg_max == reg_max
    assert probe_feature_channels(model) == channels
    for training in (True, False):  # raw dict in train mode, (decoded, raw) tuple in eval mode
        model.train(training)
        out = head_outputs(model(torch.zeros(2, 3, 128, 96)), head)
        assert [f.shape[1] for f in out.feats] == channels
        assert out.level_shapes == [(16, 12), (8, 6), (4, 3)]
        anchors = sum(h * w for h, w in out.level_shapes)
        assert out.scores.shape == (2, 5, anchors)
        assert out.boxes.shape == (2, 4 * reg_max, anchors)
        centers, strides = out.anchor_centers()
        assert centers.shape == (anchors, 2) and strides.tolist()[0] == 8.0 and strides.tolist()[-1] == 32.0
        assert centers[0].tolist() == [4.0, 4.0] and centers[-1].tolist() == [80.0, 112.0]


def test_detect_head_rejects_non_detection_model():
    from ultralytics.nn.tasks import ClassificationModel

    with pytest.raises(ValueError, match="no YOLO Detect head"):
        detect_head(ClassificationModel("yolov8n-cls.yaml", nc=3, verbose=False))


def test_level_split_roundtrip_and_adapters():
    t = torch.randn(2, 7, 16 * 12 + 8 * 6)
    maps = split_levels(t, [(16, 12), (8, 6)])
    assert [m.shape for m in maps] == [(2, 7, 16, 12), (2, 7, 8, 6)]
    assert torch.equal(join_levels(maps), t)
    adapter = ChannelAdapter(16, 64)
    assert adapter(torch.randn(2, 16, 10, 10)).shape == (2, 64, 10, 10)
    assert align_spatial(torch.randn(1, 3, 20, 20), (10, 10)).shape == (1, 3, 10, 10)


@pytest.mark.parametrize(
    "scale, strides, shift",
    [(2.0, [8, 16, 32], 1), (4.0, [8, 16, 32], 2), (1.0, [8, 16, 32], 0), (1.5, [8, 16, 32], 0),
     (8.0, [8, 16, 32], 0), (2.0, [8, 16, 32, 64], 1), (2.0, [8, 24, 32], 0)],
)
def test_level_shift(scale, strides, shift):
    assert level_shift(scale, strides) == shift


def _outputs(shapes, channels, nc=3, reg_max=16, strides=(8.0, 16.0, 32.0)) -> HeadOutputs:
    a = sum(h * w for h, w in shapes)
    feats = [torch.randn(2, c, h, w) for c, (h, w) in zip(channels, shapes)]
    return HeadOutputs(feats, torch.randn(2, 4 * reg_max, a), torch.randn(2, nc, a), reg_max, strides)


def test_head_outputs_levels_selects_anchors_of_those_levels():
    out = _outputs([(8, 8), (4, 4), (2, 2)], [4, 8, 16])
    top = out.levels(range(1, 3))
    assert top.level_shapes == [(4, 4), (2, 2)] and top.strides == (16.0, 32.0)
    assert torch.equal(top.scores, out.scores[..., 64:]) and torch.equal(top.boxes, out.boxes[..., 64:])
    assert torch.equal(top.anchor_centers()[0][:16], out.anchor_centers()[0][64:80])


def test_distiller_pairs_teacher_level_above_at_twice_the_size():
    """Teacher at 2x: its P4/P5 maps are the student's P3/P4 targets; the student's P5 gets no KD."""
    from detdistill.distill import build_class_map, load_recipe
    from detdistill.distill.distiller import Distiller

    names = ["a", "b", "c"]
    recipe = load_recipe({"losses": [{"type": "logit"}, {"type": "ld"}], "region": "all", "teacher_scale": 2})
    distiller = Distiller(recipe, [4, 8, 16], [8, 16, 32], 16, 16, build_class_map(names, names), level_shift=1)
    teacher = _outputs([(16, 16), (8, 8), (4, 4)], [8, 16, 32])
    student = _outputs([(8, 8), (4, 4), (2, 2)], [4, 8, 16])
    paired = range(256, 256 + 64 + 16)  # teacher anchors of its P4 and P5
    student.scores[..., :80] = teacher.scores[..., paired]
    student.boxes[..., :80] = teacher.boxes[..., paired]
    batch = {"img": torch.zeros(2, 3, 64, 64)}
    losses = distiller(student, teacher, batch)
    assert losses["logit"].abs() < 1e-5 and losses["ld"].abs() < 1e-5  # the unpaired P5 (random) is ignored
    student.scores[..., :64] += 1.0
    assert distiller(student, teacher, batch)["logit"] > 1e-3


def test_logit_box_recipe_distills_class_scores_on_background_anchors_too():
    """The logit-box recipe's logit loss is dense: a student that scores an object where the teacher sees
    background is corrected; the confidence-weighted `logit` recipe hardly notices."""
    from detdistill.distill import build_class_map, load_recipe
    from detdistill.distill.distiller import Distiller

    names = ["a", "b", "c"]
    shapes, channels = [(8, 8), (4, 4), (2, 2)], [4, 8, 16]
    teacher = _outputs(shapes, channels)
    teacher.scores[..., :40] = -12.0  # background for the teacher
    student = _outputs(shapes, channels)
    student.scores.copy_(teacher.scores)
    student.boxes.copy_(teacher.boxes)
    student.scores[..., :40] = 3.0  # ... where the student sees objects
    batch = {"img": torch.zeros(2, 3, 64, 64)}
    value = {}
    for name in ("logit-box", "logit"):
        recipe = load_recipe(name)
        distiller = Distiller(recipe, channels, channels, 16, 16, build_class_map(names, names))
        value[name] = distiller(student, teacher, batch)["logit"].item() / recipe.losses[0].weight
    assert value["logit"] < 1e-3 and value["logit-box"] > 0.5
