"""Head taps and adapters across YOLO families and sizes, found by structure."""

from __future__ import annotations

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel

from detdistill.distill.adapters import ChannelAdapter, align_spatial
from detdistill.distill.taps import detect_head, head_outputs, join_levels, probe_feature_channels, split_levels

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
