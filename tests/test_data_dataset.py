"""Reading a YOLO dataset: a bad data YAML, split, label line or labels folder is named with its fix."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from detdistill.data.dataset import (DatasetError, SplitError, load_dataset, read_data_yaml, read_labels,
                                     require_labels)
from detdistill.data.image_lists import list_images


def _copy_val(coco8_yaml: Path, dst: Path, labels: bool = True) -> Path:
    """coco8's 4 val images (and labels) under ``dst``, with a data YAML naming coco8's 80 classes."""
    shutil.copytree(coco8_yaml.parent / "images" / "val", dst / "images" / "val")
    if labels:
        shutil.copytree(coco8_yaml.parent / "labels" / "val", dst / "labels" / "val",
                        ignore=shutil.ignore_patterns("*.cache"))
    names = yaml.safe_load(coco8_yaml.read_text())["names"]
    (dst / "data.yaml").write_text(yaml.safe_dump({"val": "images/val", "names": names}))
    return dst / "data.yaml"


@pytest.mark.parametrize("line,why", [
    ("0 0.5 0.5 0.1", "4 values, not 5"), ("abc 0.5 0.5 0.1 0.1", "'abc' is not a number"),
    # values ultralytics sets aside as corrupt, which were scored as boxes
    ("0 1.5 0.5 0.2 0.2", "1.5 is outside 0-1: coordinates are fractions of the image's width and height"),
    ("0 0.5 0.5 -0.2 0.2", "-0.2 is outside 0-1"), ("0 0.1 0.1 0.3 0.1 0.3 1.4 0.1 0.4", "1.4 is outside 0-1"),
    ("1.5 0.5 0.5 0.2 0.2", "class 1.5 is not a class id 0, 1, 2, ..."), ("-1 0.5 0.5 0.2 0.2", "class -1 is not")])
def test_a_bad_label_line_is_named_with_its_file_line_and_the_format(coco8_yaml, tmp_path, line, why):
    data = _copy_val(coco8_yaml, tmp_path)
    image = load_dataset(data).images("val")[0]
    label = tmp_path / "labels" / "val" / f"{image.stem}.txt"
    n = len(label.read_text().splitlines()) + 1
    label.write_text(label.read_text() + line + "\n")
    with pytest.raises(DatasetError) as e:
        read_labels(image, (480, 640))
    message = str(e.value)
    assert message.startswith(f"{label} line {n} ") and why in message
    assert "'class x_center y_center width height'" in message and "normalised to 0-1" in message


def test_labels_with_extra_columns_blank_lines_polygons_and_a_bom_read_as_ultralytics_reads_them(coco8_yaml, tmp_path):
    data = _copy_val(coco8_yaml, tmp_path)
    image = load_dataset(data).images("val")[0]
    label = tmp_path / "labels" / "val" / f"{image.stem}.txt"
    ids, boxes = read_labels(image, (100, 200))
    label.write_text("\n" + "\n".join(f"{ln} 0.9" for ln in label.read_text().splitlines()) + "\n\n")
    ids2, boxes2 = read_labels(image, (100, 200))
    assert np.array_equal(ids, ids2) and np.allclose(boxes, boxes2) and len(ids) > 0

    label.write_bytes(b"\xef\xbb\xbf3 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\r\n")  # a BOM, a polygon, Windows line ends
    ids3, boxes3 = read_labels(image, (100, 200))  # (h, w): the polygon's box in pixels
    assert ids3.tolist() == [3] and np.allclose(boxes3, [[20, 10, 60, 40]])


def test_a_split_without_any_label_file_is_refused_but_background_images_are_fine(coco8_yaml, tmp_path):
    data = _copy_val(coco8_yaml, tmp_path, labels=False)
    files = load_dataset(data).images("val")
    where = re.escape(str(tmp_path / "labels" / "val"))
    with pytest.raises(FileNotFoundError, match=rf"no label file for any of the 4 images of val: looked for them in "
                                                rf"{where} "):
        require_labels(files, "val")
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val" / f"{files[0].stem}.txt").write_text("")  # one background image, the rest unlabelled
    require_labels(files, "val")
    assert len(read_labels(files[0], (10, 10))[0]) == 0


def test_a_binary_data_yaml_is_named_as_not_a_text_data_yaml(tmp_path, coco8_yaml):
    data = tmp_path / "data.yaml"
    data.write_bytes(b"\xff\xfe\x00\x01 not text")
    expected = rf"{re.escape(str(data))} is not a text data YAML \(byte 0xff at position 0"
    for read in (load_dataset, list_images):
        with pytest.raises(DatasetError, match=expected):
            read(data)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xff\xd8 a JPEG renamed")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(listing))} is not a text image list"):
        list_images(listing)


def test_the_data_yaml_reader_gives_its_keys_as_written_and_names_what_it_cannot_read(tmp_path):
    data = tmp_path / "data.yaml"
    data.write_bytes("\ufeffpath: ../elsewhere\nnames: [Straßenbahn]\ndownload: get.sh\n".encode())
    assert read_data_yaml(data) == {"path": "../elsewhere", "names": ["Straßenbahn"], "download": "get.sh"}
    for text in ("", "# only a comment\n", "- a list\n", "just text\n"):
        data.write_text(text, encoding="utf-8")
        assert read_data_yaml(data) == {}
        with pytest.raises(ValueError, match="has no 'names' key"):
            load_dataset(data)
    with pytest.raises(FileNotFoundError, match=re.escape(f"dataset YAML {tmp_path / 'missing.yaml'} does not exist. "
                                                          "Pass a YOLO data YAML")):
        read_data_yaml(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match=re.escape(f"dataset YAML {tmp_path} is a folder, not a file. Pass")):
        load_dataset(tmp_path)  # a folder
    data.write_text("names: [a\n", encoding="utf-8")
    with pytest.raises(yaml.YAMLError):
        read_data_yaml(data)


def test_an_empty_image_source_is_refused_not_read_as_the_current_folder(tmp_path, coco8_yaml, monkeypatch):
    shutil.copy(next((coco8_yaml.parent / "images" / "val").glob("*.jpg")), tmp_path)
    monkeypatch.chdir(tmp_path)  # an image here: '' used to list it
    for source in ("", " "):
        with pytest.raises(DatasetError, match="the image source is empty"):
            list_images(source)
    with pytest.raises(DatasetError, match="the data YAML path is empty"):
        load_dataset("")


def test_split_errors_print_plain_paths_and_no_quotes(coco8_yaml, tmp_path):
    with pytest.raises(SplitError) as e:
        load_dataset(coco8_yaml).images("test")
    assert str(e.value) == (f"{coco8_yaml} has no 'test' split (it has train, val): choose one of those, or add a "
                            "'test:' entry to the YAML")
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text("val: images/val\nnames: [a]\n")
    with pytest.raises(FileNotFoundError) as e:
        load_dataset(tmp_path / "data.yaml").images("val")
    assert f"no images found for split 'val' in {tmp_path / 'images' / 'val'}: " in str(e.value)
    assert "PosixPath" not in str(e.value)


def test_a_list_whose_entries_are_relative_to_elsewhere_names_the_rule(tmp_path, coco8_yaml, monkeypatch):
    """Relative entries of a .txt list are read from the list's folder; a list written relative to the current
    folder finds none of its images and says so (it was blamed on the images as unreadable)."""
    images = sorted((coco8_yaml.parent / "images" / "val").glob("*.jpg"))[:2]
    (tmp_path / "lists").mkdir()
    for image in images:
        shutil.copy(image, tmp_path / image.name)
    listing = tmp_path / "lists" / "calib.txt"
    listing.write_text("\n".join(image.name for image in images))  # relative to tmp_path, the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"none of the 2 images listed in .*calib.txt exists .*read from the "
                                                rf"list's folder, {re.escape(str(tmp_path / 'lists'))}; write"):
        list_images(Path("lists/calib.txt"))
    listing.write_text("\n".join(f"../{image.name}" for image in images))
    assert [p.name for p in list_images(Path("lists/calib.txt"))] == [image.name for image in images]


def test_a_split_list_and_the_same_list_as_an_image_source_name_the_same_images(tmp_path, coco8_yaml):
    """One reader for .txt lists: entries relative to the list's folder work as a data split and as a --calib,
    --images or demo source alike; a split's entries written from the dataset root still work as a split."""
    root = tmp_path / "root"
    shutil.copytree(coco8_yaml.parent / "images", root / "images")
    shutil.copytree(coco8_yaml.parent / "labels", root / "labels")
    (root / "lists").mkdir()
    val = sorted((root / "images" / "val").glob("*.jpg"))
    (root / "lists" / "val.txt").write_text("".join(f"../images/val/{p.name}\n" for p in val))
    (root / "lists" / "old.txt").write_text("".join(f"images/val/{p.name}\n" for p in val))  # from the root
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: lists/val.txt\ntest: lists/old.txt\n"
                                    "names: {0: person}\n")
    ds = load_dataset(root / "data.yaml")
    assert [p.resolve() for p in ds.images("val")] == val
    assert [p.resolve() for p in list_images(root / "lists" / "val.txt")] == val
    assert [p.resolve() for p in ds.images("test")] == val
