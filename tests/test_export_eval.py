"""Evaluation through the runtime agrees with ultralytics' validator; COCO's metrics come from faster-coco-eval;
bench reports per-stage latency."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from detdistill.data.dataset import load_dataset, read_labels
from detdistill.data.images import read_bgr
from detdistill.export.bench import bench
from detdistill.export.coco_metrics import CocoMetrics, MatchTable, coco_metrics
from detdistill.export.evaluate import evaluate
from conftest import export_teacher


def ultralytics_val(pt: Path, data: Path, out: Path, **kwargs) -> tuple[float, float, CocoMetrics]:
    """``YOLO(pt).val()`` at 320: its own mAP50-95 and mAP50, and COCO's metrics of the boxes it predicted (its
    predictions.json, scored here against the same labels), which tell its pipeline from its AP integration."""
    from ultralytics import YOLO

    r = YOLO(str(pt)).val(data=str(data), imgsz=320, plots=False, verbose=False, save_json=True, project=str(out),
                          name="val", exist_ok=True, **kwargs)
    by_image: dict[str, list[dict]] = {}
    for d in json.loads((out / "val" / "predictions.json").read_text()):
        by_image.setdefault(str(d["image_id"]), []).append(d)
    truth, boxes, sizes = [], [], []
    for f in load_dataset(data).images("val"):
        shape = read_bgr(f).shape[:2]
        truth.append(read_labels(f, shape))
        sizes.append(shape)
        ds = by_image.get(str(int(f.stem)) if f.stem.isnumeric() else f.stem, [])
        xyxy = np.array([d["bbox"] for d in ds], np.float64).reshape(-1, 4)  # COCO xywh
        xyxy[:, 2:] += xyxy[:, :2]
        # a dataset that is not COCO gets category ids class + 1 from ultralytics
        boxes.append((xyxy, np.array([d["score"] for d in ds]), np.array([d["category_id"] - 1 for d in ds])))
    return r.box.map, r.box.map50, coco_metrics(truth, boxes, sizes)


@pytest.fixture(scope="module")
def ultralytics_square_map(tmp_path_factory, teacher_pt, coco_mini_yaml):
    pt = export_teacher(tmp_path_factory, teacher_pt).with_name("teacher.pt")
    return ultralytics_val(pt, coco_mini_yaml, tmp_path_factory.mktemp("ultralytics-val"), batch=1, rect=False)


def test_onnx_eval_agrees_with_ultralytics_val(tmp_path_factory, teacher_pt, coco_mini_yaml, ultralytics_square_map):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    r = evaluate(onnx_path, coco_mini_yaml)
    ultra_map, ultra_map50, ultra_boxes = ultralytics_square_map
    assert r.images == 128 and r.instances == 898
    # the same boxes: COCO's metrics of ultralytics' predictions are ours (0.003 point apart: its JSON rounds)
    assert abs(r.map50_95 - ultra_boxes.map50_95) < 0.001 and abs(r.map50 - ultra_boxes.map50) < 0.001
    for ours, theirs in zip((r.ap_small, r.ap_medium, r.ap_large), (ultra_boxes.ap_small, ultra_boxes.ap_medium,
                                                                     ultra_boxes.ap_large)):
        assert abs(ours - theirs) < 0.002
    # and ultralytics' own numbers: the same matches, two integrations of the precision envelope. COCO averages it
    # at 101 recall points, ultralytics integrates its linear interpolation (trapezoids); on this teacher COCO is
    # higher by 0.34 point (mAP50-95) and 0.37 point (mAP50), the same on ultralytics' own boxes.
    assert 0 <= r.map50_95 - ultra_map < 0.005
    assert 0 <= r.map50 - ultra_map50 < 0.005
    # COCO's size breakdown: coco-mini has small, medium and large objects, and large ones are found best
    assert 0 < r.ap_small < r.ap_medium < r.ap_large < 1
    d = r.as_dict()
    assert {"mAP50-95", "mAP50", "APs", "APm", "APl"} <= set(d) and d["APl"] == r.ap_large
    assert f"APs {r.ap_small:.4f}" in r.summary()


@pytest.mark.slow
def test_pt_eval_agrees_with_default_ultralytics_val(tmp_path_factory, teacher_pt, coco_mini_yaml):
    """Scored by the same metric, a .pt agrees with ultralytics' validator on its boxes, rectangular (its default,
    batch 32) or square. Against ultralytics' own mAP50-95 the rectangular gap is 0.50 point: 0.17 between the two
    pipelines' rectangular boxes plus 0.33 between the two AP integrations."""
    pt = export_teacher(tmp_path_factory, teacher_pt).with_name("teacher.pt")
    *_, rect = ultralytics_val(pt, coco_mini_yaml, tmp_path_factory.mktemp("ultralytics-rect"))
    assert abs(evaluate(pt, coco_mini_yaml, imgsz=320, rect=True).map50_95 - rect.map50_95) < 0.005
    *_, square = ultralytics_val(pt, coco_mini_yaml, tmp_path_factory.mktemp("ultralytics-square"), rect=False)
    assert abs(evaluate(pt, coco_mini_yaml, imgsz=320).map50_95 - square.map50_95) < 0.005


def test_coco_matching_on_a_hand_made_case():
    """COCO matches by score, not by overlap: the higher-scored, looser box takes the object at the IoU thresholds
    it reaches, and the exact box behind it is a false positive there."""
    gt = [(np.array([0, 1]), np.array([[0, 0, 100, 100], [200, 200, 210, 210]], np.float32))]
    loose, exact, small = [0, 0, 100, 78], [0, 0, 100, 100], [200, 200, 210, 210]  # IoU 0.78, 1.0, 1.0
    dets = [(np.array([loose, exact, small], np.float32), np.array([0.9, 0.6, 0.5]), np.array([0, 0, 1]))]
    m = coco_metrics(gt, dets, [(480, 640)], keep_records=True)
    # class 0: AP 1 at IoU 0.50-0.75 (6 thresholds), 0.5 at 0.80-0.95 (precision 1/2 at full recall); class 1: AP 1
    assert m.per_class_ap == pytest.approx({0: 0.8, 1: 1.0})
    assert (m.map50_95, m.map50, m.map75) == pytest.approx((0.9, 1.0, 1.0))
    # by size (10x10 small, 100x100 large; none medium): where the loose box (100x78, medium) matches nothing it is
    # ignored among large objects, so large AP is 1
    assert (m.ap_small, m.ap_medium, m.ap_large) == (1.0, None, 1.0)
    table = MatchTable(m.records)  # the stored matches re-accumulate to the same numbers, class by class
    assert table.map() == pytest.approx((m.map50_95, m.map50), rel=0, abs=1e-12)
    classes, precision = table.class_ap()
    assert dict(zip(classes.tolist(), precision.mean((0, 2)).tolist())) == pytest.approx(m.per_class_ap)
    (r,) = m.records
    assert r.tp.tolist() == [[True] * 6 + [False] * 4, [False] * 6 + [True] * 4, [True] * 10]
    assert r.conf.tolist() == [0.9, 0.6, 0.5] and r.pred_cls.tolist() == [0, 0, 1] and sorted(r.gt_cls) == [0, 1]


def test_coco_metrics_of_images_without_objects_or_detections():
    empty = (np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    none = (np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int64))
    m = coco_metrics([empty], [(np.array([[0, 0, 5, 5]], np.float32), np.array([0.9]), np.array([0]))], [(10, 10)],
                     keep_records=True)
    assert (m.map50_95, m.map50, m.ap_small) == (0.0, 0.0, None)  # nothing labelled: nothing to score
    assert MatchTable(m.records).map() == (0.0, 0.0)
    m = coco_metrics([(np.array([3]), np.array([[0, 0, 50, 50]], np.float32)), empty], [none, none], [(64, 64)] * 2,
                     keep_records=True)
    assert (m.map50_95, m.ap_medium, m.ap_small) == (0.0, 0.0, None)  # a missed object scores 0
    assert [len(r.gt_cls) for r in m.records] == [1, 0]


def test_faster_coco_eval_runs_without_torch():
    """The evaluator runs on a device without torch: faster-coco-eval must not pull it in."""
    block = ("import importlib.abc, sys\n"
             "class Block(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in {'torch', 'torchvision', 'ultralytics'}:\n"
             "            raise ImportError(name + ' is blocked')\n"
             "sys.meta_path.insert(0, Block())\n")
    run = ("import numpy as np\nfrom detdistill.export.coco_metrics import coco_metrics\n"
           "m = coco_metrics([(np.array([0]), np.array([[0., 0., 10., 10.]]))], "
           "[(np.array([[0., 0., 10., 10.]]), np.array([0.9]), np.array([0]))], [(20, 20)])\n"
           "assert m.map50_95 == 1.0, m\n")
    out = subprocess.run([sys.executable, "-c", block + run], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_eval_rejects_mismatched_inputs(tmp_path_factory, teacher_pt, coco_mini_yaml, vehicles_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    with pytest.raises(ValueError, match="takes imgsz"):
        evaluate(onnx_path, coco_mini_yaml, imgsz=640)
    with pytest.raises(KeyError, match="no 'test' split"):
        evaluate(onnx_path, coco_mini_yaml, split="test")
    with pytest.raises(ValueError, match="rect evaluation"):
        evaluate(onnx_path, coco_mini_yaml, rect=True)
    for args, kwargs, said in (((5, coco_mini_yaml), {}, "model is the path of a .pt, .onnx or .engine"),
                               ((onnx_path, {"val": "x"}), {}, "data is the path of a YOLO data YAML, got dict"),
                               ((onnx_path, coco_mini_yaml), {"limit": "4"}, "limit is a number of images"),
                               ((onnx_path, coco_mini_yaml), {"limit": True}, "limit is a number of images")):
        with pytest.raises(TypeError, match=said):
            evaluate(*args, **kwargs)


def test_eval_names_a_label_file_whose_class_ids_the_yaml_does_not_name(tmp_path_factory, teacher_pt, coco8_yaml,
                                                                       tmp_path):
    import shutil

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    data = yaml.safe_load(coco8_yaml.read_text())
    shutil.copytree(coco8_yaml.parent / "images" / "val", tmp_path / "images" / "val")
    shutil.copytree(coco8_yaml.parent / "labels" / "val", tmp_path / "labels" / "val")
    bad_label = sorted((tmp_path / "labels" / "val").glob("*.txt"))[0]
    bad_label.write_text(bad_label.read_text() + "80 0.5 0.5 0.1 0.1\n")  # class 80 of an 80-class YAML (0-79)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": str(tmp_path), "val": "images/val",
                                                        "names": data["names"]}))
    with pytest.raises(ValueError, match=rf"{bad_label.name} has class ids \[80\] that .* names 80 classes"):
        evaluate(onnx_path, tmp_path / "data.yaml")


def test_bench_reports_stages(tmp_path_factory, teacher_pt, coco_mini_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    r = bench(onnx_path, coco_mini_yaml.parent / "images" / "val", runs=50, warmup=3, device="cpu")
    assert r.runs == 50 and r.fps > 0
    assert all(r.median[s] > 0 and r.p90[s] >= r.median[s] for s in ("preprocess", "inference", "postprocess"))
    assert "throughput" in r.table()


def test_bench_leaves_unreadable_frames_out(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    import shutil

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    good = sorted((coco_mini_yaml.parent / "images" / "val").glob("*.jpg"))[:2]
    for f in good:
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "0-broken.jpg").write_bytes(b"\xff\xd8 cut off")
    assert bench(onnx_path, tmp_path, runs=50, warmup=0, device="cpu").runs == 50  # the broken one left out
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "a.jpg").write_bytes(b"\xff\xd8 cut off")
    with pytest.raises(ValueError, match=r"none of the 1 frames is usable \(.*a.jpg: truncated JPEG"):
        bench(onnx_path, only_broken, runs=50, device="cpu")


def test_a_class_map_scores_a_teacher_on_a_dataset_of_other_classes(tmp_path_factory, teacher_pt, vehicles_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    coco_to_vehicles = {5: 1, 2: 2, 3: 3, 7: 4}  # bus, car, motorcycle, truck
    mapped = evaluate(onnx_path, vehicles_yaml, limit=40, class_map=coco_to_vehicles)
    with pytest.warns(UserWarning, match="the model predicts 80 classes"):  # COCO ids read as vehicle ids
        raw = evaluate(onnx_path, vehicles_yaml, limit=40)
    assert mapped.map50 > 0.2 and mapped.map50 > raw.map50 + 0.1
    assert set(mapped.per_class_ap) <= {0, 1, 2, 3, 4}
    by_name = evaluate(onnx_path, vehicles_yaml, limit=40,
                       class_map={"bus": "Bus", "CAR": 2, np.int64(3): "motorcycle", "7": "Truck"})
    assert by_name.map50_95 == mapped.map50_95
    for bad, words in (({"person": "Pedestrian"}, r"has no class 'Pedestrian' \(.*vehicles.*0: Ambulance, 1: Bus"),
                       ({0: 5}, r"has no class 5 \("),                  # the data has classes 0-4
                       ({"Pedestrian": 0}, r"the model has no class 'Pedestrian' \(the model's classes: 0: person"),
                       ([(2, 2)], "must be a dict")):
        with pytest.raises(ValueError, match=r"class_map") as e:
            evaluate(onnx_path, vehicles_yaml, limit=1, class_map=bad)
        assert re.search(words, str(e.value)), str(e.value)


def test_an_upper_case_suffix_is_evaluated_as_the_runtime_opens_it(tmp_path_factory, teacher_pt, coco8_yaml, tmp_path):
    """MODEL.ONNX (a copy from a FAT-formatted card, say): the runtime and the demo opened it, eval refused it."""
    import shutil

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    upper = shutil.copyfile(onnx_path, tmp_path / "TEACHER.ONNX")
    assert evaluate(upper, coco8_yaml, limit=2).map50_95 == evaluate(onnx_path, coco8_yaml, limit=2).map50_95


def test_a_pt_is_scored_at_the_size_it_was_trained_at_unless_told(tmp_path, teacher_pt, coco8_yaml):
    """As ultralytics' YOLO(path).val() takes it, so a .pt and its export at its training size score alike."""
    import torch
    from typer.testing import CliRunner

    from detdistill.cli import app
    from detdistill.export.evaluate import open_detector

    ckpt = torch.load(teacher_pt, map_location="cpu", weights_only=False)
    ckpt["train_args"]["imgsz"] = 160
    small = tmp_path / "small.pt"
    torch.save(ckpt, small)
    assert open_detector(small).imgsz == (160, 160) and open_detector(small, imgsz=320).imgsz == (320, 320)
    del ckpt["train_args"]["imgsz"]
    torch.save(ckpt, tmp_path / "unknown.pt")
    assert open_detector(tmp_path / "unknown.pt").imgsz == (640, 640)
    out = CliRunner().invoke(app, ["eval", str(small), "--data", str(coco8_yaml), "--limit", "1"], terminal_width=300)
    assert out.exit_code == 0 and "note: small.pt is scored at 160 px (a .pt at the size it was trained at" in \
        out.output, out.output
    out = CliRunner().invoke(app, ["eval", str(small), "--data", str(coco8_yaml), "--limit", "1", "--imgsz", "320"],
                             terminal_width=300)
    assert out.exit_code == 0 and "note:" not in out.output, out.output
