"""tools/bench_distill.py with --int8 on a run trained earlier without it: the run's best.pt is quantized and scored
in INT8 without training again, and its new row supersedes the old one."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import shutil

from conftest import load_tool


def test_a_reused_run_is_scored_in_int8_without_training_again(tmp_path, coco8_yaml, teacher_pt):
    tool = load_tool("bench_distill")
    row = {"protocol": tool.PROTOCOL, "method": "none", "seed": 0, "track": str(coco8_yaml), "student": "x",
           "epochs": 1, "imgsz": 320, "test_map": 0.5}
    best = tmp_path / "runs" / "none-s0" / "weights" / "best.pt"
    best.parent.mkdir(parents=True)
    shutil.copy(teacher_pt, best)
    digest = hashlib.sha256(best.read_bytes()).hexdigest()
    path = tool.records_path(tmp_path, row)
    assert path.parent == tmp_path / "records"  # a track given as an absolute path stays inside --out
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"tune": ["fp32 tune"], "test": ["fp32 test"]}))

    new = tool.add_int8(row, argparse.Namespace(out=tmp_path))

    assert "test_int8_map" not in row  # the stored row is left as it was
    assert new["int8_from"] == "ptq tensorrt" and new["test_map"] == 0.5
    assert 0.2 < new["test_int8_map"] <= 1 and 0.2 < new["tune_int8_map"] <= 1  # the COCO teacher on COCO images
    records = pickle.loads(path.read_bytes())
    assert records["test"] == ["fp32 test"]  # the FP32 matches are kept beside the new ones
    assert len(records["test_int8"]) == len(records["tune_int8"]) == 2  # coco8's val halves: 2 photos each
    assert all(r.photo for r in records["test_int8"])  # named photos: the intervals draw them
    assert hashlib.sha256(best.read_bytes()).hexdigest() == digest  # not trained again

    lines = [json.dumps(row), json.dumps({**row, "method": "at"}), json.dumps(new)]
    latest = tool.latest_rows(lines)
    assert [r["method"] for r in latest] == ["none", "at"] and latest[0] == new


def test_a_run_trained_but_not_scored_is_scored_without_training_again(tmp_path, coco8_yaml, teacher_pt):
    """A run whose training finished (best.pt, every epoch in results.csv) and whose scoring failed is scored on
    the next call; a run with an epoch missing is not taken as finished."""
    tool = load_tool("bench_distill")
    run = tmp_path / "runs" / "none-s0"
    (run / "weights").mkdir(parents=True)
    shutil.copy(teacher_pt, run / "weights" / "best.pt")
    digest = hashlib.sha256((run / "weights" / "best.pt").read_bytes()).hexdigest()
    (run / "results.csv").write_text("epoch,time,metrics/mAP50-95(B)\n1,10.0,0.25\n2,30.0,0.3\n")
    assert tool.finished_training(run, epochs=3) is None  # interrupted after two of three epochs
    assert tool.finished_training(run, epochs=2) == (0.3, 15.0)  # best mAP, median of 10 s and 20 s
    args = argparse.Namespace(student="x.pt", epochs=2, imgsz=320, batch=2, workers=0, close_mosaic=0, fraction=1.0,
                              device="cpu", teacher=teacher_pt, track=str(coco8_yaml), out=tmp_path, train_arg=None,
                              freeze_bn=False, int8=False)

    row = tool.run_one("none", 0, args)

    assert (row["val_map"], row["epoch_s"]) == (0.3, 15.0) and 0 < row["test_map"] <= 1
    assert hashlib.sha256((run / "weights" / "best.pt").read_bytes()).hexdigest() == digest  # not trained again
    assert not (run / "weights" / "last.pt").exists() and tool.records_path(tmp_path, row).is_file()
