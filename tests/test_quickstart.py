"""The README's first command, in its tiny variant: every stage runs and the report holds every artifact."""

from __future__ import annotations

import json

import cv2
import pytest

from detdistill.quickstart import QuickstartConfig, run_quickstart

pytestmark = pytest.mark.slow


def test_quickstart_tiny_end_to_end_and_resume(tmp_path):
    cfg = QuickstartConfig.tiny(tmp_path / "qs")
    lines: list[str] = []
    report = run_quickstart(cfg, log=lines.append)
    assert [l.split()[0] for l in lines if l.startswith("[")] == [f"[{i}/6]" for i in range(1, 7)]
    rows = json.loads((cfg.workdir / "results.json").read_text())
    assert [r["artifact"] for r in rows] == [
        "teacher (.pt)", "student, no KD (.pt)", "student, KD (.pt)", "student, KD, FP32 ONNX", "student, KD, INT8 ONNX"
    ]
    assert all(0.0 <= r["mAP50-95"] <= r["mAP50"] <= 1.0 for r in rows)
    assert rows[-1]["inference ms"] > 0 and rows[-1]["MB"] < rows[-2]["MB"]  # INT8 file is smaller than FP32
    text = report.read_text()
    for r in rows:
        assert r["artifact"] in text
    frames = min(cfg.n_val, cfg.demo_frames)
    assert f"summary: {frames} frames" in text  # the demo processed every frame of the video
    cap = cv2.VideoCapture(str(cfg.workdir / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    cap.release()

    # A rerun reuses every finished stage: no training, same checkpoints.
    best = cfg.workdir / "student-kd" / "weights" / "best.pt"
    stamp = best.stat().st_mtime_ns
    run_quickstart(cfg, log=lambda line: None)
    assert best.stat().st_mtime_ns == stamp
