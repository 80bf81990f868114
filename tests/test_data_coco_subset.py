"""`detdistill data coco-subset`: a COCO-format sample in, a YOLO dataset ultralytics loads out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from detdistill.data.cli import register
from detdistill.data.coco_subset import (
    COCO80_CATEGORY_IDS,
    COCO80_NAMES,
    CocoSubsetError,
    list_presets,
    load_preset,
    make_coco_subset,
    resolve_classes,
    split_budget,
)

W, H = 64, 48
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 6, "name": "bus"},
              {"id": 10, "name": "traffic light"}]
PERSON, CAR, BUS, LIGHT = 1, 3, 6, 10
# split -> image id -> annotations as (category id, [x, y, w, h], iscrowd); MISSING has no file on disk.
MISSING = 7
SAMPLE = {
    "train2017": {
        1: [(CAR, [10, 5, 20, 10], 0), (BUS, [50, 40, 30, 20], 0), (PERSON, [0, 0, 5, 5], 0)],  # bus leaves the image
        2: [(LIGHT, [30, 10, 4, 12], 0), (CAR, [0, 0, 64, 48], 1)],  # a crowd car next to a real light
        3: [],  # no annotation at all: background
        4: [(PERSON, [1, 1, 10, 10], 0)],  # none of the chosen classes: background
        5: [(CAR, [5, 5, 30, 30], 1)],  # only a crowd car: neither positive nor background
        6: [(CAR, [70, 5, 10, 10], 0)],  # a car wholly outside the image: clipped to nothing
        MISSING: [(CAR, [1, 1, 5, 5], 0)],
    },
    "val2017": {101: [(BUS, [0, 0, 32, 24], 0), (CAR, [40, 30, 10, 10], 0)], 102: []},
}


def _name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def _yolo(cls: int, x1: float, y1: float, x2: float, y2: float) -> list[float]:
    """Expected YOLO row for a box already clipped to the W x H image."""
    return [cls, (x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H]


def _write_coco(root: Path, image_root: Path | None = None) -> Path:
    """The sample as a COCO 2017 download under ``root``."""
    (root / "annotations").mkdir(parents=True)
    rng = np.random.default_rng(0)
    ann_id = 0
    for split, images in SAMPLE.items():
        folder = (image_root or root) / split
        folder.mkdir(parents=True)
        coco = {"images": [], "annotations": [], "categories": CATEGORIES}
        for image_id, anns in images.items():
            coco["images"].append({"id": image_id, "file_name": _name(image_id), "width": W, "height": H})
            if image_id != MISSING:
                cv2.imwrite(str(folder / _name(image_id)), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
            for cat, box, crowd in anns:
                ann_id += 1
                coco["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": box,
                                            "area": box[2] * box[3], "iscrowd": crowd})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def _labels(out: Path, split: str) -> dict[str, list[list[float]]]:
    return {p.stem: [list(map(float, line.split())) for line in p.read_text().splitlines()]
            for p in sorted((out / "labels" / split).glob("*.txt"))}


def _cli(*args: object):
    """``detdistill data *args`` through the data verbs' typer app."""
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # keeps `data` a sub-command, as under the real `detdistill` app
        """detdistill"""

    return CliRunner().invoke(app, ["data", *map(str, args)])


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return _write_coco(tmp_path / "coco")


def test_labels_crowd_clipping_and_splits(coco: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "subset"
    data = make_coco_subset(coco, out, ["Car", "bus", "traffic_light"], progress=False)
    assert data == out / "data.yaml"

    # 0.1 of 2 images with objects rounds to no background image; the crowd car of image 2 is skipped.
    for split, expected in (("train", {1: [_yolo(0, 10, 5, 30, 15), _yolo(1, 50, 40, 64, 48)],
                                       2: [_yolo(2, 30, 10, 34, 22)]}),
                            ("val", {101: [_yolo(1, 0, 0, 32, 24), _yolo(0, 40, 30, 50, 40)]})):
        got = _labels(out, split)
        assert sorted(got) == sorted(_name(i)[:-4] for i in expected)
        for i, rows in expected.items():
            assert len(got[_name(i)[:-4]]) == len(rows)
            for row, want in zip(got[_name(i)[:-4]], rows, strict=True):
                assert row == pytest.approx(want, abs=1e-6)

    # Images sit next to their labels, hard-linked to the COCO files; train and val never mix.
    for split, source in (("train", "train2017"), ("val", "val2017")):
        images = sorted((out / "images" / split).iterdir())
        assert [p.stem for p in images] == sorted(_labels(out, split))
        assert all(p.stat().st_ino == (coco / source / p.name).stat().st_ino for p in images)

    cfg = yaml.safe_load(data.read_text())
    assert "path" not in cfg and cfg["train"] == "images/train" and cfg["val"] == "images/val"
    assert cfg["names"] == {0: "car", 1: "bus", 2: "traffic light"}
    assert cfg["coco_classes"] == {0: [2], 1: [5], 2: [9]}
    stats = cfg["coco_subset"]["splits"]
    assert stats["train"] == {"from": "train2017", "images": 2, "negatives": 0, "boxes": 3, "missing_skipped": 1,
                              "crowd_skipped": 2, "empty_boxes_skipped": 1, "other_size_skipped": 0}
    assert "not on disk" in caplog.text


def test_background_images(coco: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    make_coco_subset(coco, out, ["car", "bus", "traffic light"], include_empty=1.0, progress=False)
    train = _labels(out, "train")
    # Images 3 (nothing) and 4 (person only) are background with empty label files; 5 (crowd only) and 6
    # (empty box only) contain a chosen class that cannot be labelled, so they are neither.
    assert sorted(train) == [_name(i)[:-4] for i in (1, 2, 3, 4)]
    assert train[_name(3)[:-4]] == [] and train[_name(4)[:-4]] == []
    assert (out / "labels" / "train" / f"{_name(3)[:-4]}.txt").read_text() == ""
    assert sorted(_labels(out, "val")) == [_name(101)[:-4], _name(102)[:-4]]

    make_coco_subset(coco, out, ["car"], include_empty=1, progress=False)  # a count; rewrites its own folder
    train = _labels(out, "train")  # image 1 (image 2's car is a crowd) and one of the two background images
    assert len(train) == 2 and _name(1)[:-4] in train and train.keys() & {_name(3)[:-4], _name(4)[:-4]}
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "car"}

    (out / "labels" / "train.cache").write_bytes(b"ultralytics' label cache")  # training wrote it: not the user's
    make_coco_subset(coco, out, ["car"], include_empty=1, progress=False)
    mine = out / "images" / "train" / "mine.jpg"  # a file the user added is never deleted by a rewrite
    mine.write_bytes(b"my own image")
    with pytest.raises(CocoSubsetError, match=r"holds 1 file\(s\) the converter did not write \(e.g. images/train/mine"):
        make_coco_subset(coco, out, ["bus"], progress=False)
    assert mine.read_bytes() == b"my own image" and yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "car"}


def test_max_images_is_seeded_and_caps_each_split(coco: Path, tmp_path: Path) -> None:
    picks = []
    for run in ("a", "b"):
        make_coco_subset(coco, tmp_path / run, ["car", "bus", "traffic light"], max_images=1, progress=False, seed=3)
        picks.append((sorted(_labels(tmp_path / run, "train")), sorted(_labels(tmp_path / run, "val"))))
    assert picks[0] == picks[1] and len(picks[0][0]) == 1 and len(picks[0][1]) == 1
    assert split_budget(1000, 1000, None, 0.1) == (1000, 100)
    assert split_budget(1000, 1000, 100, 0.1) == (91, 9)
    assert split_budget(1000, 3, None, 0.5) == (1000, 3)
    assert split_budget(5, 100, 10, 0) == (5, 0)


def test_classes_by_id_and_images_folder_layout(tmp_path: Path) -> None:
    coco = _write_coco(tmp_path / "coco", image_root=tmp_path / "coco" / "images")
    data = make_coco_subset(coco, tmp_path / "out", [9, "2"], splits=("val2017", "train2017"), progress=False)
    cfg = yaml.safe_load(data.read_text())
    assert cfg["names"] == {0: "traffic light", 1: "car"} and cfg["coco_classes"] == {0: [9], 1: [2]}
    [row] = _labels(tmp_path / "out", "train")[_name(1)[:-4]]
    assert row == pytest.approx(_yolo(1, 10, 5, 30, 15), abs=1e-6)


def test_bad_input_errors(coco: Path, tmp_path: Path) -> None:
    with pytest.raises(CocoSubsetError, match=r"unknown COCO class 'trafic light'; did you mean 'traffic light'"):
        make_coco_subset(coco, tmp_path / "o", ["car", "trafic light"])
    with pytest.raises(CocoSubsetError, match="class id 80 is out of range"):
        resolve_classes([80])
    with pytest.raises(CocoSubsetError, match="no class given"):
        make_coco_subset(coco, tmp_path / "o", [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CocoSubsetError, match=r"no annotations/instances_train2017.json under .*empty; expected the "
                                              r"COCO 2017 layout: annotations/, train2017/, val2017/"):
        make_coco_subset(tmp_path / "empty", tmp_path / "o", ["car"])
    os.rename(coco / "val2017", coco / "elsewhere")
    with pytest.raises(CocoSubsetError, match=r"no val2017/ image folder \(nor images/val2017/\)"):
        make_coco_subset(coco, tmp_path / "o", ["car"])
    os.rename(coco / "elsewhere", coco / "val2017")
    for p in (coco / "val2017").iterdir():
        p.unlink()
    with pytest.raises(CocoSubsetError, match=r"none of the 1 val2017 images with \['bus'\] is in"):
        make_coco_subset(coco, tmp_path / "o", ["bus"])
    with pytest.raises(CocoSubsetError, match=r"no category 8 \('truck'\)"):
        make_coco_subset(coco, tmp_path / "o", ["truck"])
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(CocoSubsetError, match="is not empty and was not written by"):
        make_coco_subset(coco, tmp_path / "foreign", ["car"], splits=("train2017",))
    assert not (tmp_path / "o").exists()  # nothing is written before every input is checked
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(CocoSubsetError, match=r"COCO folder .*notes.txt is a file, not a folder"):
        make_coco_subset(notes, tmp_path / "o", ["car"])
    with pytest.raises(CocoSubsetError, match=r"preset file missing.yaml does not exist"):
        make_coco_subset(coco, tmp_path / "o", load_preset("missing.yaml"))
    # the lights' annotations name an image that is not listed: said, not "no box"
    _edit_json(coco / "annotations" / "instances_train2017.json",
               lambda c: [a.update(image_id=999) for a in c["annotations"] if a["category_id"] == LIGHT])
    with pytest.raises(CocoSubsetError, match=r"no image in instances_train2017.json has a \(non-crowd\) box of "
                                              r"\['traffic light'\]: 1 annotation\(s\) refer to image ids that "
                                              r"'images' does not list \(e.g. 999\)"):
        make_coco_subset(coco, tmp_path / "o", ["traffic light"], splits=("train2017",))


def test_ultralytics_loads_the_dataset(coco: Path, tmp_path: Path) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(make_coco_subset(coco, tmp_path / "ds", ["car", "bus", "traffic light"],
                                                  include_empty=1.0, progress=False)))
    assert data["nc"] == 3 and data["names"] == {0: "car", 1: "bus", 2: "traffic light"}
    assert Path(data["train"]) == (tmp_path / "ds" / "images" / "train").resolve()
    ds = YOLODataset(img_path=data["train"], data=data, augment=False, imgsz=64)
    boxes = {Path(lb["im_file"]).stem: lb["cls"].ravel().tolist() for lb in ds.labels}
    assert boxes == {_name(1)[:-4]: [0, 1], _name(2)[:-4]: [2], _name(3)[:-4]: [], _name(4)[:-4]: []}


def test_tables_match_ultralytics_and_presets_resolve() -> None:
    from ultralytics.data.converter import coco80_to_coco91_class
    from ultralytics.utils import ROOT, YAML

    assert list(COCO80_NAMES) == list(YAML.load(ROOT / "cfg/datasets/coco.yaml")["names"].values())
    assert list(COCO80_CATEGORY_IDS) == coco80_to_coco91_class()
    assert {"road", "people"} <= set(list_presets())
    assert [COCO80_NAMES[i] for i in resolve_classes(load_preset("road"))] == [
        "person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light", "stop sign"]
    for name in list_presets():
        resolve_classes(load_preset(name))


def test_an_annotations_file_of_another_shape_is_named(tmp_path: Path) -> None:
    from detdistill.data.coco_annotations import load_instances

    cases = {"list.json": ([1, 2], "holds a JSON list"),
             "text-categories.json": ({"images": [], "annotations": [], "categories": "x"},
                                      "its categories should be a list of objects")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(CocoSubsetError, match=message):
            load_instances(tmp_path / name)


def test_a_preset_file_that_is_not_a_mapping_of_classes_is_named(tmp_path: Path) -> None:
    as_list, binary = tmp_path / "list.yaml", tmp_path / "binary.yaml"
    as_list.write_text("- person\n- car\n")
    binary.write_bytes(bytes(range(128, 256)))
    with pytest.raises(CocoSubsetError, match="list.yaml needs a non-empty `classes:` list"):
        load_preset(as_list)
    with pytest.raises(CocoSubsetError, match="binary.yaml is not a readable YAML file"):
        load_preset(binary)
    typo = tmp_path / "mine.yaml"
    typo.write_text("classes: [potted plant, persn]\n")
    with pytest.raises(CocoSubsetError, match=r"preset .*mine.yaml: unknown COCO class 'persn'; did you mean 'person'"):
        load_preset(typo)


def test_cli(coco: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _cli
    monkeypatch.chdir(tmp_path)
    res = run("coco-subset", "--coco", coco, "--classes", "car, bus", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "train: 1 images (0 background), 2 boxes, 2 crowd boxes skipped; skipped 1 missing image(s)" in res.output
    assert "val: 1 images (0 background), 2 boxes" in res.output
    assert f"wrote {Path('datasets/coco-car-bus/data.yaml')}" in res.output
    assert (tmp_path / "datasets/coco-car-bus/labels/val").is_dir()

    preset = tmp_path / "buses.yaml"
    preset.write_text("classes: [bus]\n")
    res = run("coco-subset", "--coco", coco, "--preset", preset, "--negatives", "1", "--no-progress")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((tmp_path / "datasets/coco-buses/data.yaml").read_text())["coco_classes"] == {0: [5]}

    for args, message in ((("--classes", "car", "--preset", "road"), "either --classes or --preset"),
                          ((), "no classes: pass --classes"),
                          (("--classes", "car,buss"), "did you mean 'bus'"),
                          (("--preset", "nope"), "no class preset 'nope'"),
                          (("--classes", "road"), "no category 2 ('bicycle')"),  # the road preset via --classes
                          (("--classes", "car", "--negatives", "-1"), "--negatives '-1': give a fraction"),
                          (("--classes", "car", "--negatives", "lots"), "or a whole number of images (50)")):
        res = run("coco-subset", "--coco", coco, *args)
        assert res.exit_code == 2 and "error: " in res.output and message in res.output, res.output
    res = run("presets")
    assert res.exit_code == 0 and "road" in res.output and "traffic light" in res.output


def test_negatives_read_as_a_recipe_reads_them():
    """A decimal point makes a fraction, a whole number a count, on the command line as in a pipeline recipe (where
    YAML gives 5 as an int and 5.0 as a float); --negatives 5 was 5x there and 5 images in a recipe."""
    from detdistill.data.cli import negative_images
    from detdistill.data.coco_subset import split_budget

    assert negative_images("0.1") == 0.1 and negative_images(" 5 ") == 5 and isinstance(negative_images("5"), int)
    assert isinstance(negative_images("5.0"), float) and negative_images("0") == 0
    assert split_budget(100, 1000, None, negative_images("5")) == (100, 5)  # what recipe `negatives: 5` gives
    assert split_budget(100, 1000, None, negative_images("5.0")) == (100, 500)
    for bad in ("-1", "nan", "inf", "", "1e"):
        with pytest.raises(ValueError, match="--negatives"):
            negative_images(bad)


def _edit_json(path: Path, edit) -> None:
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))


def _jpeg(path: Path, value: int) -> bytes:
    """A real W x H image of one grey ``value`` at ``path`` (JPEG or PNG by its suffix); returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), value, dtype=np.uint8))
    return path.read_bytes()


def test_an_image_of_another_size_than_annotated_is_left_out_not_labelled_wrong(coco: Path, tmp_path: Path,
                                                                               caplog: pytest.LogCaptureFixture) -> None:
    resized = coco / "train2017" / _name(2)  # resized after annotation: its boxes, scaled by the JSON size, miss
    cv2.imwrite(str(resized), np.zeros((H * 2, W * 2, 3), np.uint8))
    out = tmp_path / "out"
    make_coco_subset(coco, out, ["car", "bus", "traffic light"], progress=False)
    assert sorted(_labels(out, "train")) == [_name(1)[:-4]]
    assert f"1 of the 2 chosen train2017 images are not the size instances_train2017.json gives (e.g. {resized}: " \
           f"{W * 2}x{H * 2} on disk, {W}x{H} in the annotations)" in caplog.text
    cfg = yaml.safe_load((out / "data.yaml").read_text())
    assert cfg["coco_subset"]["splits"]["train"]["other_size_skipped"] == 1
    with pytest.raises(CocoSubsetError, match=r"1 of the 1 chosen val2017 images are not the size .* fix width and "
                                              r"height in instances_val2017.json"):
        cv2.imwrite(str(coco / "val2017" / _name(101)), np.zeros((H, W + 1, 3), np.uint8))
        make_coco_subset(coco, tmp_path / "out2", ["car", "bus", "traffic light"], progress=False)


def test_images_sharing_an_output_name_are_refused_and_their_sources_kept(coco: Path, tmp_path: Path) -> None:
    train = coco / "train2017"
    originals = {name: _jpeg(train / name, v) for name, v in (("a/x.jpg", 10), ("b/x.jpg", 200), ("y.png", 90))}
    originals["y.jpg"] = _jpeg(train / "y.jpg", 150)
    ann = coco / "annotations" / "instances_train2017.json"
    base = ann.read_text()
    # a/x.jpg and b/x.jpg would both be images/train/x.jpg; y.jpg and y.png would share labels/train/y.txt
    # (and one file listed twice would have two label files in one)
    rename = "rename one of the two files and its file_name in instances_train2017.json"
    for (first, second), clash, fix in ((("a/x.jpg", "b/x.jpg"), "images/train/x.jpg", rename),
                                        (("y.jpg", "y.png"), "labels/train/y.txt", rename),
                                        (("y.jpg", "y.jpg"), "images/train/y.jpg",
                                         "remove one of the two entries from instances_train2017.json")):
        ann.write_text(base)
        _edit_json(ann, lambda c: [im.update(file_name=name) for im, name in zip(c["images"], (first, second))])
        with pytest.raises(CocoSubsetError) as err:
            make_coco_subset(coco, tmp_path / "out", ["car", "traffic light"], splits=("train2017",), progress=False)
        assert (f"image 1 ({train / first}) and image 2 ({train / second}) would both be written to {clash}"
                in str(err.value)), err.value
        assert str(err.value).endswith(fix)
        assert not (tmp_path / "out").exists()  # refused before anything is written
    assert {name: (train / name).read_bytes() for name in originals} == originals


def test_placing_a_file_never_writes_through_an_existing_hard_link(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from detdistill.data.files import link_or_copy

    a, b, c = (tmp_path / "src" / n for n in ("a.jpg", "b.jpg", "c.jpg"))
    bytes_a, bytes_b, bytes_c = _jpeg(a, 10), _jpeg(b, 200), _jpeg(c, 90)
    dst = tmp_path / "out" / "x.jpg"
    dst.parent.mkdir()
    link_or_copy(a, dst)  # a hard link to the user's a.jpg
    link_or_copy(b, dst)
    assert dst.read_bytes() == bytes_b and a.read_bytes() == bytes_a
    monkeypatch.setattr("detdistill.data.files.os.link",
                        lambda *args: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device link")))
    link_or_copy(c, dst)  # copied (no link across file systems), onto a fresh file, not through b's link
    assert dst.read_bytes() == bytes_c and b.read_bytes() == bytes_b and a.read_bytes() == bytes_a
    with pytest.raises(ValueError, match="onto itself"):
        link_or_copy(a, a)
    assert a.read_bytes() == bytes_a


def test_file_names_with_the_split_folder_are_found_and_missing_files_named_in_full(coco: Path, tmp_path: Path) -> None:
    for split in ("train2017", "val2017"):  # file_name "train2017/x.jpg", relative to the COCO folder
        _edit_json(coco / "annotations" / f"instances_{split}.json",
                   lambda c, split=split: [im.update(file_name=f"{split}/{im['file_name']}") for im in c["images"]])
    make_coco_subset(coco, tmp_path / "out", ["car", "bus", "traffic light"], progress=False)
    assert sorted(_labels(tmp_path / "out", "train")) == [_name(1)[:-4], _name(2)[:-4]]
    [row, _] = _labels(tmp_path / "out", "val")[_name(101)[:-4]]
    assert row == pytest.approx(_yolo(1, 0, 0, 32, 24), abs=1e-6)

    (coco / "val2017" / _name(101)).unlink()
    with pytest.raises(CocoSubsetError) as err:
        make_coco_subset(coco, tmp_path / "out2", ["bus"], progress=False)
    assert f"(e.g. image 101: no file {coco / 'val2017' / 'val2017' / _name(101)})" in str(err.value), err.value
    assert "fix the file_names in instances_val2017.json" in str(err.value)


def test_a_rerun_replaces_an_interrupted_conversion(coco: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import detdistill.data.coco_subset_writer as writer

    out, calls = tmp_path / "out", []
    real_link = writer.link_or_copy

    def interrupted(src: Path, dst: Path) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_link(src, dst)

    monkeypatch.setattr(writer, "link_or_copy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_coco_subset(coco, out, ["car", "bus", "traffic light"], progress=False)
    assert (out / "images" / "train" / _name(1)).is_file() and not (out / "data.yaml").exists()
    monkeypatch.undo()

    mine = out / "labels" / "train" / "mine.txt"  # a file the user added is still never deleted
    mine.write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(CocoSubsetError, match=r"holds 1 file\(s\) the converter did not write \(e.g. labels/train/m"):
        make_coco_subset(coco, out, ["car", "bus", "traffic light"], progress=False)
    mine.unlink()
    data = make_coco_subset(coco, out, ["car", "bus", "traffic light"], progress=False)
    assert sorted(_labels(out, "train")) == [_name(1)[:-4], _name(2)[:-4]]
    assert yaml.safe_load(data.read_text())["coco_subset"]["splits"]["train"]["images"] == 2


MALFORMED = {  # what is wrong -> (edit of instances_train2017.json, the entry and problem the error names)
    "no file_name": (lambda c: c["images"][0].pop("file_name"), "image 1 (images[0]) has no 'file_name'"),
    "no height": (lambda c: c["images"][0].pop("height"),
                  "image 1 (images[0]) has no 'height'; it needs the image's height in pixels (> 0)"),
    "zero width": (lambda c: c["images"][0].update(width=0), "image 1 (images[0]) has width 0;"),
    "no image id": (lambda c: c["images"][1].pop("id"), "images[1] has no 'id'; it needs an integer 'id'"),
    "repeated image id": (lambda c: c["images"][1].update(id=1), "image 1 (images[1]) repeats an image id"),
    "no bbox": (lambda c: c["annotations"][0].pop("bbox"), "annotation 1 (annotations[0], of image 1) has no 'bbox'"),
    "3-number bbox": (lambda c: c["annotations"][0].update(bbox=[10, 5, 20]),
                      "annotation 1 (annotations[0], of image 1) has bbox [10, 5, 20]; it needs [x, y, width, height]"),
    "null bbox": (lambda c: c["annotations"][0].update(bbox=None),
                  "annotation 1 (annotations[0], of image 1) has bbox null;"),
    "category without id": (lambda c: c["categories"][1].pop("id"), "categories[1] ('car') has no 'id'"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_annotation_is_named(case: str, coco: Path, tmp_path: Path) -> None:
    edit, problem = MALFORMED[case]
    ann = coco / "annotations" / "instances_train2017.json"
    _edit_json(ann, edit)
    with pytest.raises(CocoSubsetError) as err:
        make_coco_subset(coco, tmp_path / "out", ["car", "traffic light"], progress=False)
    message = str(err.value)
    assert message.startswith(f"{ann}: {problem}"), message
    assert message.endswith("fix that entry or re-download the annotations")
    assert not (tmp_path / "out").exists()

    res = _cli("coco-subset", "--coco", coco, "--classes", "car", "--out", tmp_path / "out", "--no-progress")
    assert res.exit_code == 2 and res.output.startswith("error: ") and problem in res.output, res.output

