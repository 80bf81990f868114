"""tools/bench_distill.py's summary: its intervals draw photos, whether a stored run's records name them or the run
stored them beside its records, and say "image-level" where neither does."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from detdistill.export.coco_metrics import coco_metrics
from conftest import ROOT, load_tool

PHOTOS = 30


def _matched_records(seed: int) -> tuple[list, list]:
    """COCOeval's matches of one image set's detections: all of them, and only the confident ones."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(PHOTOS):
        m = int(rng.integers(1, 5))
        xy = rng.uniform(0, 200, (m, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 100, (m, 2))], 1)
        cls = rng.integers(0, 3, m)
        src = rng.integers(0, m, 8)
        d = boxes[src] + rng.normal(0, 8, (8, 4))
        d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 1)
        gts.append((cls, boxes))
        dets.append((d, rng.random(8), cls[src]))
    confident = [(b[s > 0.5], s[s > 0.5], c[s > 0.5]) for b, s, c in dets]
    sizes = [(320, 320)] * PHOTOS
    return (coco_metrics(gts, dets, sizes, keep_records=True).records,
            coco_metrics(gts, confident, sizes, keep_records=True).records)


def _summary(tmp_path, tool, *, in_records: bool, beside: bool) -> str:
    """Two methods, one seed, every photo's image stored twice (as the vehicles export holds it)."""
    photos = [f"photo{i}" for i in range(PHOTOS) for _ in range(2)]
    rows = []
    for method, records in zip(("none", "logit-box"), _matched_records(0)):
        twice = [dataclasses.replace(r, photo=p if in_records else None) for r, p in zip(
            (r for r in records for _ in range(2)), photos)]
        row = {"method": method, "seed": 0, "track": "vehicles", "student": "pruned0.5", "epochs": 6, "imgsz": 320,
               "epoch_s": 1.0}
        stored = {"tune": twice, "test": twice}
        if beside:
            stored["photos"] = {"tune": photos, "test": photos}
        path = tool.records_path(tmp_path, row)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(stored))
        rows.append(row)
    line = next(x for x in tool.summarize(rows, tmp_path, samples=200).splitlines() if x.startswith("| logit-box"))
    return line.split(" | ")[5]  # the gain vs no KD


@pytest.fixture(scope="module")
def tool():
    return load_tool("bench_distill")


def test_the_summary_draws_photos_from_the_records_or_from_beside_them(tmp_path, tool):
    named = _summary(tmp_path / "a", tool, in_records=True, beside=False)
    beside = _summary(tmp_path / "b", tool, in_records=False, beside=True)
    unknown = _summary(tmp_path / "c", tool, in_records=False, beside=False)
    assert named == beside and "image-level" not in named
    assert "image-level" in unknown
    width = lambda s: np.ptp([float(x) for x in s.split("[")[1].split("]")[0].split(",")])  # noqa: E731
    assert width(unknown) < width(named)  # copies counted as independent images narrow the interval


def test_a_failed_run_fails_the_command(fixtures_dir, tmp_path):
    """gpu_bench's --fail-fast reads the exit status: a run that fails must not leave it at 0."""
    env = dict(os.environ, YOLO_OFFLINE="1", DETDISTILL_FIXTURES=str(fixtures_dir))
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_distill.py"), "--track", "vehicles",
                          "--student", "yolov8n.yaml", "--methods", "qad-self", "--seeds", "0", "--epochs", "1",
                          "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode != 0 and "1 run(s) failed" in res.stderr  # qad-self needs a trained .pt: fails in its run
    assert "qad-self needs a trained student" in (tmp_path / "vehicles-qad-self:logit-box-s0.log").read_text()
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_distill.py"), "--methods", "no-such-recipe",
                          "--out", str(tmp_path / "typo")], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 2 and "'no-such-recipe' is neither" in res.stderr  # refused before any run
    assert not (tmp_path / "typo").exists()


def test_bench_robustness_names_what_it_cannot_score(fixtures_dir, tmp_path):
    """A folder without runs, a mistyped corruption or runs that are not there: one usage error each (they were
    tracebacks, or an empty table and exit 0)."""
    env = dict(os.environ, YOLO_OFFLINE="1", DETDISTILL_FIXTURES=str(fixtures_dir))
    tool = [sys.executable, str(ROOT / "tools" / "bench_robustness.py")]
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "results.jsonl").write_text("")
    for args, message in (([str(tmp_path / "none")], "holds no results.jsonl"),
                          ([str(tmp_path / "runs"), "--corrupt", "fogg"], "unknown corruption 'fogg'"),
                          ([str(tmp_path / "runs"), "--methods", "bogus"], "no finished run in")):
        res = subprocess.run([*tool, "--out", *args], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
