"""Paired bootstrap intervals of mAP differences, on real predictions of the COCO teacher; the per-image COCO matches
they re-accumulate reproduce COCOeval's mAP on any resample of the images."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from detdistill.export.coco_metrics import ImageRecord, MatchTable, coco_metrics
from detdistill.data.splits import photo_groups
from detdistill.export.compare import paired_gain
from detdistill.export.evaluate import evaluate, map_of, open_detector
from conftest import export_teacher, val_images


@pytest.fixture(scope="module")
def records(tmp_path_factory, teacher_pt, coco_mini_yaml):
    """Per-image records of the teacher at 320 with all its detections, and with only its confident ones."""
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    files = val_images(coco_mini_yaml, 40)
    out = {}
    for name, conf in (("full", 0.001), ("confident", 0.5)):
        det = open_detector(onnx_path, conf=conf)
        out[name] = evaluate(det, coco_mini_yaml, files=files, keep_records=True)
    return out


def test_records_reproduce_the_reported_map(records):
    """The identity resample gives faster-coco-eval's numbers (to the last bit on x86-64 with numpy 2)."""
    r = records["full"]
    exact = pytest.approx((r.map50_95, r.map50), rel=0, abs=1e-12)
    assert len(r.records) == 40 and map_of(r.records) == exact
    table = MatchTable(r.records)
    assert table.map(np.ones(40)) == exact and map_of(r.records, np.arange(40)) == exact
    classes, precision = table.class_ap()
    assert {int(c): a for c, a in zip(classes, precision.mean((0, 2)))} == pytest.approx(r.per_class_ap)


def _random_images(n: int, seed: int):
    """Boxes near the objects and anywhere, over 4 classes, with continuous scores (no ties)."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(n):
        m = int(rng.integers(0, 6))
        cls = rng.integers(0, 4, m)
        xy = rng.uniform(0, 300, (m, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(8, 150, (m, 2))], 1)
        k = int(rng.integers(0, 40))
        src = rng.integers(0, max(m, 1), k)
        d = (boxes[src] if m else rng.uniform(0, 300, (k, 4))) + rng.normal(0, 6, (k, 4))
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        d_cls = np.where(rng.random(k) < 0.8, cls[src] if m else 0, rng.integers(0, 4, k))
        gts.append((cls, boxes))
        dets.append((d, rng.random(k), d_cls))
    return gts, dets


def test_a_resample_scores_as_coco_on_the_drawn_images():
    """Re-accumulating stored matches with each image counted as often as drawn is COCOeval on the drawn images."""
    gts, dets = _random_images(50, seed=3)
    full = coco_metrics(gts, dets, [(480, 640)] * 50, keep_records=True)
    table = MatchTable(full.records)
    rng = np.random.default_rng(0)
    for _ in range(3):
        drawn = np.sort(rng.integers(0, 50, 50))
        again = coco_metrics([gts[i] for i in drawn], [dets[i] for i in drawn], [(480, 640)] * 50)
        assert table.map(np.bincount(drawn, minlength=50)) == pytest.approx((again.map50_95, again.map50), abs=1e-12)
        assert map_of(full.records, drawn) == table.map(np.bincount(drawn, minlength=50))


def test_older_records_keep_loading_and_count_100_detections_per_class():
    """Records pickled by the previous evaluator (module path and up to 300 detections per image) still score, under
    COCO's cut to the 100 best detections per image and class."""
    tp = np.zeros((150, 10), bool)
    conf = np.linspace(0.9, 0.1, 150)
    tp[120] = True  # the only hit is the 121st best box: COCO never sees it
    rec = ImageRecord(tp, conf, np.zeros(150, np.int64), np.array([0]))
    old = pickle.dumps(rec, protocol=0).replace(b"detdistill.export.coco_metrics", b"detdistill.export.evaluate")
    loaded = pickle.loads(old)
    assert MatchTable([loaded]).map() == (0.0, 0.0) and loaded.photo is None  # stored without its photo
    tp[120], tp[50] = False, True
    assert MatchTable([rec]).map()[0] == pytest.approx(1 / 51)  # precision 1/51 at full recall


def test_a_real_gap_is_claimed_and_no_gap_is_not(records):
    full, confident = records["full"].records, records["confident"].records
    gap = paired_gain([full], [confident], samples=300)
    assert gap.diff == pytest.approx(records["full"].map50_95 - records["confident"].map50_95)
    assert gap.diff > 0.02 and gap.low > 0 and gap.significant  # dropping low-score boxes costs recall
    assert gap.low < gap.diff < gap.high
    same = paired_gain([full, full], [full, full], samples=100)
    assert same.diff == same.low == same.high == 0 and not same.significant
    assert "no claim" in str(same)


def test_unpaired_runs_are_refused(records):
    full = records["full"].records
    with pytest.raises(ValueError, match="paired seeds"):
        paired_gain([full, full], [full])
    with pytest.raises(ValueError, match="same images"):
        paired_gain([full], [full[:10]])
    with pytest.raises(ValueError, match="same images, in the same order: image 0"):
        paired_gain([full], [full[::-1]])  # as many images, in another order: the records' photos tell


def test_the_evaluator_names_each_images_photo(records, coco_mini_yaml):
    """The records say which photo each image is (coco-mini holds no copies: one photo per image)."""
    assert [r.photo for r in records["full"].records] == photo_groups(val_images(coco_mini_yaml, 40))
    assert len({r.photo for r in records["full"].records}) == 40


def test_copies_of_a_photo_are_drawn_together(records):
    """Each image present twice (as in a dataset export that copies every photo): drawn image by image, the copies
    count as independent evidence and the interval narrows by about sqrt(2); drawn by photo, as the records name
    them, it is the interval of the photos without copies. Every image its own group is the image-level bootstrap,
    sample for sample."""
    full, confident = records["full"].records, records["confident"].records
    twice = lambda r: [x for x in r for _ in range(2)]  # noqa: E731
    once = paired_gain([full], [confident], samples=400)
    by_image = paired_gain([twice(full)], [twice(confident)], groups=range(2 * len(full)), samples=400)
    by_photo = paired_gain([twice(full)], [twice(confident)], samples=400)
    width = lambda g: g.high - g.low  # noqa: E731
    assert by_image.diff == by_photo.diff == pytest.approx(once.diff, abs=1e-12)  # copies do not move mAP
    assert 1.2 < width(by_photo) / width(by_image) < 2.5  # sqrt(2) in expectation; percentiles of 400 samples vary
    assert (by_photo.low, by_photo.high) == (once.low, once.high)  # one draw per photo: the single copy's interval
    named = paired_gain([twice(full)], [twice(confident)], groups=[i for i in range(len(full)) for _ in range(2)],
                        samples=400)
    assert (named.low, named.high) == (once.low, once.high)  # the caller's groups: the same clusters
    alone = paired_gain([full], [confident], groups=[f"p{i}" for i in range(len(full))], samples=400)
    assert (alone.low, alone.high) == (once.low, once.high)


def test_records_without_photos_are_drawn_alone_and_say_so(records):
    """Records that name no photo (stored without them) give the image-level interval, marked as such."""
    full, confident = records["full"].records, records["confident"].records
    unnamed = lambda r: [dataclasses.replace(x, photo=None) for x in r] * 2  # noqa: E731
    by_image = paired_gain([unnamed(full)], [unnamed(confident)], samples=400)
    assert not by_image.by_photo and "image-level" in str(by_image)
    forced = paired_gain([unnamed(full)], [unnamed(confident)], groups=range(2 * len(full)), samples=400)
    assert (by_image.low, by_image.high) == (forced.low, forced.high)
    mixed = paired_gain([full * 2], [unnamed(confident)], samples=400)  # one side names them: drawn by photo
    assert mixed.by_photo and "image-level" not in str(mixed)
    assert mixed.high - mixed.low > by_image.high - by_image.low
    with pytest.raises(ValueError, match="groups names 3 images"):
        paired_gain([full], [confident], groups=["a", "b", "c"])
