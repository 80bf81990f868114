"""Pruning bookkeeping and least-squares refitting: every pruned convolution is exactly the original's kept
slice, and refitting on real images brings the pruned model's outputs on other images closer to the teacher's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from detdistill.prune import PruneConfig, calibration_batches, load_detection_model, prune_model
from detdistill.prune.reconstruct import KeptChannels, execution_order, reconstruct


def _prune(model, target: float):
    original = copy.deepcopy(model).float().eval()
    kept = KeptChannels(model)
    prune_model(model, PruneConfig(target=target, imgsz=320), kept=kept)
    return original, model.float().eval(), kept.by_name(model)


def _assert_slices(original, pruned, kept):
    mods = dict(original.named_modules())
    convs = [(n, m) for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d)]
    assert set(kept) == {n for n, _ in convs}
    narrowed = 0
    for name, m in convs:
        out, inp = kept[name]
        w = mods[name].weight.detach().float()[out]
        if m.groups == 1:
            w = w[:, inp]
        assert torch.equal(m.weight.detach().float(), w), name
        narrowed += len(out) < mods[name].out_channels
    assert narrowed >= 10  # pruning happened across the network


@pytest.fixture(scope="module")
def pruned_teacher(teacher_pt):
    model, _ = load_detection_model(teacher_pt)
    return _prune(model, 0.7)


def test_kept_channels_are_the_pruned_weights(pruned_teacher):
    """C2f's split cv1, concats and the Detect head: each conv is the original indexed by the recorded channels."""
    _assert_slices(*pruned_teacher)


def test_kept_channels_yolo11_attention_and_depthwise():
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    original, pruned, kept = _prune(model, 0.6)
    _assert_slices(original, pruned, kept)
    assert any(m.groups > 1 for m in pruned.modules() if isinstance(m, nn.Conv2d))  # DWConv in the head


def _discrepancy(original, pruned, batches) -> float:
    """Mean squared difference of the decoded outputs (boxes in units of the image size, class scores)."""
    errs = []
    with torch.no_grad():
        for x in batches:
            a, b = original(x)[0], pruned(x)[0]
            scale = torch.ones(a.shape[1], 1)
            scale[:4] = 1 / x.shape[-1]
            errs.append(((a - b) * scale).pow(2).mean())
    return float(torch.stack(errs).mean())


def test_refit_brings_held_out_outputs_closer(pruned_teacher, coco_mini_yaml):
    original, pruned, kept = pruned_teacher
    pruned = copy.deepcopy(pruned)
    root = coco_mini_yaml.parent / "images"
    calib = calibration_batches(root / "train", 224, limit=32)
    held_out = calibration_batches(root / "val", 224, limit=16)
    before = _discrepancy(original, pruned, held_out)
    report = reconstruct(original, pruned, kept, calib)
    after = _discrepancy(original, pruned, held_out)
    print(f"held-out output discrepancy {before:.5f} -> {after:.5f}; {len(report)} convs refitted")
    assert len(report) > len(execution_order(pruned)) // 2
    assert after < 0.8 * before
    widths = [tuple(m.weight.shape) for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [tuple(m.weight.shape) for m in pruned_teacher[1].modules() if isinstance(m, nn.Conv2d)]
