"""tools/bench_int8_cpu.py: the images its INT8 drops are measured on, and its held-out test set for the teacher."""

from __future__ import annotations

import pytest

from detdistill.data.dataset import load_dataset
from detdistill.data.splits import half_of, photo_groups, split_halves
from conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("bench_int8_cpu")


def test_the_heldout_test_set_shares_no_photo_with_calibration_or_tuning(tool, vehicles_yaml):
    ds = load_dataset(vehicles_yaml)
    calib = ds.images("train")[:208]
    plain = tool.eval_sets("vehicles", calib, heldout=False)
    assert plain == split_halves(ds.images("val"))
    sets = tool.eval_sets("vehicles", calib, heldout=True)
    assert sets["tune"] == plain["tune"]
    test = set(photo_groups(sets["test"]))
    assert not test & set(photo_groups(calib)) and not test & set(photo_groups(sets["tune"]))
    assert all(half_of(f) == "test" for f in sets["test"])
    assert set(plain["test"]) < set(sets["test"]) and len(sets["test"]) > 3 * len(plain["test"])
    assert len(sets["test"]) == 2 * len(test)  # both copies of each photo, drawn together by the bootstrap
