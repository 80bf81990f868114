"""Unlabeled images: the teacher's detections, mapped onto the student's classes, label them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from detdistill.data.unlabeled import add_unlabeled, teacher_to_student

VEHICLE_SOURCES = [(2, 7), (5,), (2,), (3,), (7,)]  # Ambulance <- car, truck; Bus; Car; Motorcycle; Truck


def test_teacher_classes_go_to_the_student_class_they_alone_define():
    mapping = teacher_to_student(VEHICLE_SOURCES, 80)
    assert mapping == {2: 2, 3: 3, 5: 1, 7: 4}  # Ambulance shares car and truck: it gets no pseudo-labels


def test_a_teacher_class_shared_by_two_single_source_classes_labels_nothing():
    assert teacher_to_student([(0,), (0,), (1,)], 2) == {1: 2}


@pytest.mark.slow
def test_unlabeled_images_join_the_training_split_with_the_teachers_boxes(fixtures_dir, teacher_pt, tmp_path):
    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset

    frames = tmp_path / "dashcam"
    frames.mkdir()
    mini = fixtures_dir / "coco-mini"
    with_vehicles = [p for p in sorted((mini / "labels" / "val").glob("*.txt"))
                     if any(line.split()[0] in {"2", "5", "7"} for line in p.read_text().splitlines())]
    for label in with_vehicles[:3] + sorted((mini / "labels" / "val").glob("*.txt"))[:3]:
        shutil.copy(mini / "images" / "val" / f"{label.stem}.jpg", frames / f"{label.stem}.jpg")
    (frames / "broken.jpg").write_bytes(b"\xff\xd8 cut off")  # an unreadable frame is left out, not a crash
    data = fixtures_dir / "vehicles" / "data.yaml"
    out_yaml = add_unlabeled(data, teacher_pt, frames, tmp_path / "work", conf=0.3, imgsz=320)

    merged = check_det_dataset(str(out_yaml))
    assert merged["names"] == {0: "Ambulance", 1: "Bus", 2: "Car", 3: "Motorcycle", 4: "Truck"}
    assert merged["coco_classes"][0] == [2, 7]
    assert len(merged["train"]) == 2 and Path(merged["train"][1]).name == "images"
    assert yaml.safe_load(out_yaml.read_text())["train"][1] == "pseudo/images"  # moves with the work folder

    # Each label file holds exactly the teacher's vehicle detections, relabelled as student classes.
    teacher = YOLO(str(teacher_pt))
    mapping = teacher_to_student(VEHICLE_SOURCES, 80)
    labels = sorted((tmp_path / "work" / "pseudo" / "labels").glob("*.txt"))
    assert len(labels) == len(list(frames.glob("*.jpg"))) - 1 and not any("broken" in p.name for p in labels)
    total = 0
    for label in labels:
        image = frames / (label.stem.split("_", 1)[1] + ".jpg")
        r = teacher.predict(str(image), conf=0.3, imgsz=320, verbose=False)[0]
        want = sorted(mapping[c] for c in r.boxes.cls.int().tolist() if c in mapping)
        got = sorted(int(line.split()[0]) for line in label.read_text().splitlines())
        assert got == want
        total += len(got)
    assert total > 0  # these COCO val images do contain cars, buses or trucks

    # A rerun with the same inputs reuses the labels.
    stamp = tmp_path / "work" / "pseudo" / "pseudo_labels.json"
    before = stamp.stat().st_mtime_ns
    add_unlabeled(data, teacher_pt, frames, tmp_path / "work", conf=0.3, imgsz=320)
    assert stamp.stat().st_mtime_ns == before
    assert yaml.safe_load(out_yaml.read_text())["val"].endswith("valid/images")

    # A frame replaced under the same name is labelled again (the labels were kept for the old picture).
    first = sorted(frames.glob("*.jpg"))[0]
    first.write_bytes((mini / "images" / "val" / f"{with_vehicles[-1].stem}.jpg").read_bytes())
    add_unlabeled(data, teacher_pt, frames, tmp_path / "work", conf=0.3, imgsz=320)
    assert stamp.stat().st_mtime_ns != before
    linked = tmp_path / "work" / "pseudo" / "images" / f"000000_{first.stem}.jpg"
    assert linked.read_bytes() == first.read_bytes()
    # A stamp cut off mid-write is not a crash: the images are labelled again.
    stamp.write_text('{"key": "ab')
    add_unlabeled(data, teacher_pt, frames, tmp_path / "work", conf=0.3, imgsz=320)
    assert json.loads(stamp.read_text())["images"] == len(labels)
