"""Paired bootstrap intervals of mAP differences, on real predictions of the COCO teacher."""

from __future__ import annotations

import pytest

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
    r = records["full"]
    assert len(r.records) == 40 and map_of(r.records) == pytest.approx((r.map50_95, r.map50))


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
