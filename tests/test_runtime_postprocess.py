"""Decode + class-aware NMS in numpy reproduces ultralytics' predictions for the real teacher."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from detdistill.runtime import Detections, Detector
from detdistill.runtime.postprocess import decode, nms
from conftest import export_teacher, val_images


def test_nms_matches_torchvision():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (400, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (400, 2)).astype(np.float32)], 1)
    scores = rng.uniform(0, 1, 400).astype(np.float32)
    for iou in (0.3, 0.5, 0.7):
        ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        assert np.array_equal(nms(boxes, scores, iou), ref)


def test_detector_reproduces_ultralytics_predict(tmp_path_factory, teacher_pt, coco_mini_yaml):
    from ultralytics import YOLO

    path = export_teacher(tmp_path_factory, teacher_pt)
    model = YOLO(str(path.with_name("teacher.pt")))
    det = Detector(path, conf=0.25, iou=0.7, letterbox="predict")
    checked = 0
    for f in val_images(coco_mini_yaml, 12):
        frame = __import__("cv2").imread(str(f))
        ref = model.predict(frame, imgsz=320, conf=0.25, iou=0.7, rect=False, verbose=False)[0].boxes
        res = det(frame)
        assert isinstance(res, Detections)
        assert res.boxes.dtype == np.float32 and res.scores.dtype == np.float32 and res.class_ids.dtype == np.int64
        assert len(res) == len(ref), f
        assert np.array_equal(res.class_ids, ref.cls.numpy().astype(np.int64))
        np.testing.assert_allclose(res.scores, ref.conf.numpy(), atol=1e-4)
        np.testing.assert_allclose(res.boxes, ref.xyxy.numpy(), atol=0.05)  # pixels of the original frame
        checked += len(res)
    assert checked > 20
    assert set(det.last_timings) == {"preprocess", "inference", "postprocess"}
    assert det.names[0] == "person" and det.imgsz == (320, 320)


def test_classes_filter_and_multi_label():
    rng = np.random.default_rng(1)
    boxes = np.tile(np.array([[50.0], [50.0], [20.0], [20.0]], np.float32), (1, 3))
    scores = np.zeros((3, 3), np.float32)
    scores[0, 0], scores[1, 0], scores[2, 1] = 0.9, 0.6, 0.8  # anchor 0: classes 0 and 1
    _, s, c = decode(boxes, scores, conf=0.25, iou=0.5)
    assert c.tolist() == [0, 2] and np.allclose(s, [0.9, 0.8])
    _, s, c = decode(boxes, scores, conf=0.25, iou=0.5, multi_label=True)
    assert sorted(c.tolist()) == [0, 1, 2]
    _, _, c = decode(boxes, scores, conf=0.25, iou=0.5, classes=[2])
    assert c.tolist() == [2]
    with pytest.raises(ValueError, match="conf"):
        decode(boxes, scores, conf=1.5)
    del rng


def test_detector_rejects_bad_arguments(tmp_path_factory, teacher_pt, tmp_path):
    path = export_teacher(tmp_path_factory, teacher_pt)
    with pytest.raises(ValueError, match="classes"):
        Detector(path, classes=[80])
    with pytest.raises(ValueError, match="backend"):
        Detector(tmp_path / "model.tflite")
    with pytest.raises(FileNotFoundError, match="export"):
        Detector(tmp_path / "missing.onnx")
