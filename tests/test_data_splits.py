"""The sealed test split: a fixed, name-based cut of every evaluation set into a tuning and a test half."""

from __future__ import annotations

import yaml

from detdistill.data.splits import half_of, photo_groups, source_name, split_halves, write_half_yaml
from detdistill.data.dataset import load_dataset


def test_the_cut_depends_on_the_photo_name_only(tmp_path):
    assert source_name("a/b/0013d97a44c586c0_jpg.rf.QohOjYeZzQhUb4dxfAUr.jpg") == "0013d97a44c586c0_jpg"
    assert half_of("x/000000000139.jpg") == half_of("/elsewhere/000000000139.png")
    names = [f"{i:012d}.jpg" for i in range(400)]
    halves = split_halves(names)
    assert sorted(halves["tune"] + halves["test"], key=str) == sorted(map(__import__("pathlib").Path, names), key=str)
    assert 160 <= len(halves["tune"]) <= 240  # about half: a hash, not a pattern of the names
    assert split_halves(names[:100])["test"] == [p for p in halves["test"] if int(p.stem) < 100]  # subsets agree


def test_copies_of_one_photo_share_a_half_on_the_real_vehicles_set(vehicles_yaml):
    files = load_dataset(vehicles_yaml).images("val")
    halves = split_halves(files)
    tune, test = ({source_name(f) for f in halves[h]} for h in ("tune", "test"))
    assert not tune & test
    assert len(files) > len(tune) + len(test)  # the set really holds copies (each photo twice)
    assert 0.35 < len(halves["test"]) / len(files) < 0.65
    photos = photo_groups(halves["test"])  # the bootstrap's clusters: every photo of the test half with both copies
    assert len(photos) == len(halves["test"]) == 2 * len(set(photos)) and set(photos) == test


def test_a_half_yaml_trains_on_train_and_validates_on_the_tuning_half(coco_mini_yaml, tmp_path):
    out = write_half_yaml(coco_mini_yaml, tmp_path)
    cfg = yaml.safe_load(out.read_text())
    ds, full = load_dataset(out), load_dataset(coco_mini_yaml)
    halves = split_halves(full.images("val"))
    assert [p.resolve() for p in ds.images("val")] == [p.resolve() for p in halves["tune"]]
    assert [p.resolve() for p in ds.images("test")] == [p.resolve() for p in halves["test"]]
    assert ds.images("train") == full.images("train") and cfg["names"] == yaml.safe_load(coco_mini_yaml.read_text())["names"]
