"""The demo with a real exported detector (the COCO teacher at imgsz 320) on the synthetic clip."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import pytest
import typer
from typer.testing import CliRunner

from detdistill.demo import run_demo
from detdistill.demo.cli import register
from detdistill.demo.synthetic import sample_images, write_clip

os.environ.setdefault("YOLO_OFFLINE", "1")


def export_teacher_onnx(teacher_pt: Path, folder: Path, imgsz: int = 320) -> Path:
    """FP32 ONNX of the teacher, via detdistill.export (or ultralytics when that is missing)."""
    weights = folder / "teacher.pt"
    shutil.copy(teacher_pt, weights)          # the fixtures folder is read-only; exporters write beside weights
    try:
        from detdistill.export.onnx_export import export_onnx
    except ImportError:
        from ultralytics import YOLO

        return Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz))
    return Path(export_onnx(weights, folder / f"teacher-{imgsz}.onnx", imgsz=imgsz))


@pytest.fixture(scope="session")
def teacher_onnx(teacher_pt, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("detdistill.runtime", reason="detdistill.runtime is not there yet")
    return export_teacher_onnx(teacher_pt, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def bus_clip(tmp_path_factory) -> Path:
    if not sample_images():
        pytest.skip("ultralytics' sample photos (bus.jpg) are not installed")
    return write_clip(tmp_path_factory.mktemp("clip") / "bus.mp4", frames=24, size=(640, 480))


def test_headless_demo_detects_the_bus(teacher_onnx, bus_clip, tmp_path):
    lines: list[str] = []
    summary = run_demo(teacher_onnx, str(bus_clip), conf=0.25, show=False, record=tmp_path / "out.mp4",
                       save_json=tmp_path / "dets.jsonl", log=lines.append)
    assert summary.frames == 24 and summary.dropped == 0 and summary.error is None
    assert summary.mean_fps == pytest.approx(24 / summary.seconds)
    assert summary.stage_ms["inference"] > 0 and summary.stage_ms["preprocess"] > 0
    assert 0 < summary.latency_p50_ms <= summary.latency_p95_ms
    records = [json.loads(line) for line in (tmp_path / "dets.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(24))
    # frame 0 shows the whole bus in its left 360 pixels
    buses = [d for d in records[0]["detections"] if d["name"] == "bus"]
    assert buses and buses[0]["score"] > 0.5
    x1, y1, x2, y2 = buses[0]["box"]
    assert x1 < 60 and 280 < x2 < 400 and (x2 - x1) * (y2 - y1) > 0.2 * 640 * 480
    assert any(d["name"] == "person" for d in records[0]["detections"])
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 480)


def test_cli_demo_with_class_filter(teacher_onnx, bus_clip, tmp_path):
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:
        pass

    out = tmp_path / "dets.jsonl"
    result = CliRunner().invoke(app, ["demo", "--model", str(teacher_onnx), "--source", str(bus_clip), "--no-show",
                                      "--classes", "bus", "--max-frames", "4", "--save-json", str(out)])
    assert result.exit_code == 0, result.output
    assert "summary: 4 frames" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    names = {d["name"] for r in records for d in r["detections"]}
    assert names == {"bus"}


def test_cli_names_its_own_option_for_a_model_it_cannot_tell(teacher_pt, teacher_onnx, bus_clip, tmp_path):
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:
        pass

    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--model", str(teacher_pt), "-s", str(bus_clip), "--no-show"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "is a PyTorch checkpoint" in result.output and f"`detdistill export {teacher_pt}`" in result.output
    renamed = tmp_path / "teacher.model"   # an ONNX model under a suffix --backend auto cannot read
    shutil.copy(teacher_onnx, renamed)
    result = runner.invoke(app, ["demo", "--model", str(renamed), "-s", str(bus_clip), "--no-show"])
    assert result.exit_code == 2 and "add --backend onnxruntime" in result.output, result.output
    assert "backend='" not in result.output   # the Python argument is no use on the command line
    with pytest.raises(ValueError, match="pass backend='onnxruntime'"):   # the Python API keeps its own words
        run_demo(renamed, str(bus_clip), show=False, log=lambda m: None)
    result = runner.invoke(app, ["demo", "--model", str(renamed), "-s", str(bus_clip), "--no-show",
                                 "--backend", "onnxruntime", "--max-frames", "2"])
    assert result.exit_code == 0 and "summary: 2 frames" in result.output, result.output
