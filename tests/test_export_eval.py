"""Evaluation through the runtime agrees with ultralytics' validator; bench reports per-stage latency."""

from __future__ import annotations

import numpy as np
import pytest

from detdistill.export.bench import bench
from detdistill.export.evaluate import average_precision, evaluate, match
from conftest import export_teacher


@pytest.fixture(scope="module")
def ultralytics_square_map(tmp_path_factory, teacher_pt, coco_mini_yaml):
    from ultralytics import YOLO

    pt = export_teacher(tmp_path_factory, teacher_pt).with_name("teacher.pt")
    r = YOLO(str(pt)).val(data=str(coco_mini_yaml), imgsz=320, batch=1, rect=False, plots=False, verbose=False)
    return r.box.map, r.box.map50


def test_onnx_eval_agrees_with_ultralytics_val(tmp_path_factory, teacher_pt, coco_mini_yaml, ultralytics_square_map):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    r = evaluate(onnx_path, coco_mini_yaml)
    assert r.images == 128 and r.instances == 898
    assert abs(r.map50_95 - ultralytics_square_map[0]) < 0.005
    assert abs(r.map50 - ultralytics_square_map[1]) < 0.005


@pytest.mark.slow
def test_pt_eval_agrees_with_default_ultralytics_val(tmp_path_factory, teacher_pt, coco_mini_yaml):
    from ultralytics import YOLO

    pt = export_teacher(tmp_path_factory, teacher_pt).with_name("teacher.pt")
    ref = YOLO(str(pt)).val(data=str(coco_mini_yaml), imgsz=320, plots=False, verbose=False).box.map  # rect, batch 32
    assert abs(evaluate(pt, coco_mini_yaml, imgsz=320, rect=True).map50_95 - ref) < 0.005
    sq = YOLO(str(pt)).val(data=str(coco_mini_yaml), imgsz=320, rect=False, plots=False, verbose=False).box.map
    assert abs(evaluate(pt, coco_mini_yaml, imgsz=320).map50_95 - sq) < 0.005


def test_matching_and_ap_on_a_hand_made_case():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]], np.float32)
    tp = match(pred, np.array([0, 0, 1]), gt, np.array([0, 1]), np.array([0.9, 0.8, 0.7]))
    assert tp[:, 0].tolist() == [True, False, True]  # the duplicate is a false positive
    classes, ap = average_precision(tp, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), np.array([0, 1]))
    assert classes.tolist() == [0, 1] and np.allclose(ap[:, 0], 0.995)  # 101-point COCO AP of a perfect ranking


def test_eval_rejects_mismatched_inputs(tmp_path_factory, teacher_pt, coco_mini_yaml, vehicles_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    with pytest.raises(ValueError, match="takes imgsz"):
        evaluate(onnx_path, coco_mini_yaml, imgsz=640)
    with pytest.raises(KeyError, match="no 'test' split"):
        evaluate(onnx_path, coco_mini_yaml, split="test")
    with pytest.raises(ValueError, match="rect evaluation"):
        evaluate(onnx_path, coco_mini_yaml, rect=True)


def test_bench_reports_stages(tmp_path_factory, teacher_pt, coco_mini_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    r = bench(onnx_path, coco_mini_yaml.parent / "images" / "val", runs=50, warmup=3, device="cpu")
    assert r.runs == 50 and r.fps > 0
    assert all(r.median[s] > 0 and r.p90[s] >= r.median[s] for s in ("preprocess", "inference", "postprocess"))
    assert "throughput" in r.table()


def test_a_class_map_scores_a_teacher_on_a_dataset_of_other_classes(tmp_path_factory, teacher_pt, vehicles_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    coco_to_vehicles = {5: 1, 2: 2, 3: 3, 7: 4}  # bus, car, motorcycle, truck
    mapped = evaluate(onnx_path, vehicles_yaml, limit=40, class_map=coco_to_vehicles)
    raw = evaluate(onnx_path, vehicles_yaml, limit=40)  # COCO ids read as vehicle ids: 0-4 are person..airplane
    assert mapped.map50 > 0.2 and mapped.map50 > raw.map50 + 0.1
    assert set(mapped.per_class_ap) <= {0, 1, 2, 3, 4}
