"""The demo loop with an injected fake detector: headless runs, recording, JSON, Ctrl-C, stats, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import demo_cli, video_frame_count
from typer.testing import CliRunner

from detdistill.demo import run_demo
from detdistill.demo.app import parse_classes, resolve_classes
from detdistill.demo.overlay import class_color, draw_detections, draw_hud, hud_lines
from detdistill.demo.stats import RunStats
from detdistill.demo.synthetic import write_clip

ROOT = Path(__file__).resolve().parents[1]

FAKE_DETECTOR = """
import time
import numpy as np
from types import SimpleNamespace

class FakeDetector:
    names = {0: "person", 5: "bus"}

    def __init__(self, delay=0.0, interrupt_at=None):
        self.delay, self.interrupt_at, self.calls = delay, interrupt_at, 0
        self.last_timings = {}

    def __call__(self, frame):
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls += 1
        time.sleep(self.delay)
        h, w = frame.shape[:2]
        self.last_timings = {"preprocess": 0.1, "inference": self.delay * 1e3, "postprocess": 0.1}
        return SimpleNamespace(
            boxes=np.array([[w * 0.1, h * 0.2, w * 0.5, h * 0.8], [w * 0.6, h * 0.3, w * 0.9, h * 0.9]], np.float32),
            scores=np.array([0.9, 0.6], np.float32), class_ids=np.array([5, 0], np.int64))
"""
namespace: dict = {}
exec(FAKE_DETECTOR, namespace)
FakeDetector = namespace["FakeDetector"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=40, size=(320, 240))


def test_headless_run_processes_every_frame_and_records(clip, tmp_path):
    seen, lines = [], []
    summary = run_demo(
        FakeDetector(delay=0.005), str(clip), show=False, record=tmp_path / "out.mp4",
        save_json=tmp_path / "dets.jsonl", stats_every_s=0.05, log=lines.append,
        on_frame=lambda i, image, dets: seen.append(i),
    )
    assert seen == list(range(40))
    assert summary.frames == 40 and summary.dropped == 0 and summary.reconnects == 0
    assert not summary.interrupted and summary.error is None
    assert summary.mean_fps == pytest.approx(summary.frames / summary.seconds)
    assert 0 < summary.latency_p50_ms <= summary.latency_p95_ms
    assert summary.stage_ms["inference"] == pytest.approx(5.0)
    assert set(summary.stage_ms) == {"capture", "preprocess", "inference", "postprocess", "draw", "output"}
    assert video_frame_count(tmp_path / "out.mp4") == 40
    records = [json.loads(line) for line in (tmp_path / "dets.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(40))
    assert records[0]["detections"][0]["name"] == "bus" and len(records[0]["detections"]) == 2
    assert records[0]["width"] == 320 and records[0]["height"] == 240
    assert any(line.startswith("frames ") and "FPS" in line for line in lines)      # periodic stats line
    assert any(line.startswith("summary: 40 frames") for line in lines)


def test_records_of_an_image_folder_name_their_file_and_a_one_pixel_image_still_records(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((1, 5, 3), 200, np.uint8))  # 1 pixel high: MPEG-4 refuses it
    (folder / "b.jpg").write_bytes(b"not a jpeg")  # skipped: frame 1 is c.png
    cv2.imwrite(str(folder / "c.png"), np.full((40, 60, 3), 90, np.uint8))
    run_demo(FakeDetector(), str(folder), show=False, record=tmp_path / "out.mp4", save_json=tmp_path / "d.jsonl",
             log=lambda m: None)
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [(r["frame"], r["image"]) for r in records] == [(0, str(folder / "a.png")), (1, str(folder / "c.png"))]
    assert video_frame_count(tmp_path / "out.mp4") == 2
    run_demo(FakeDetector(), str(clip_of(tmp_path)), show=False, save_json=tmp_path / "v.jsonl", log=lambda m: None)
    assert all("image" not in json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines())


def clip_of(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "short.mp4", frames=3, size=(160, 120))


def test_recorded_frames_carry_the_overlay(clip, tmp_path):
    run_demo(FakeDetector(), str(clip), show=False, record=tmp_path / "o.avi", max_frames=3, log=lambda m: None)
    cap = cv2.VideoCapture(str(tmp_path / "o.avi"))
    ok, annotated = cap.read()
    ok2, raw = cv2.VideoCapture(str(clip)).read()
    assert ok and ok2
    person = np.array(class_color(0), np.int16)       # the person box and its filled label

    def near_person(image):
        return int((np.abs(image.astype(np.int16) - person).max(axis=2) < 50).sum())

    assert near_person(annotated) > near_person(raw) + 100


def test_class_filter_by_name(clip, tmp_path):
    run_demo(FakeDetector(), str(clip), classes="BUS", show=False, save_json=tmp_path / "d.jsonl",
             max_frames=5, log=lambda m: None)
    records = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(records) == 5
    assert all([d["name"] for d in r["detections"]] == ["bus"] for r in records)
    with pytest.raises(ValueError, match=r"unknown class 'truck'; this model knows ids \d+-\d+ \(.*bus.*\): pass "
                                         r"--classes names or ids from these"):
        run_demo(FakeDetector(), str(clip), classes="truck", show=False, log=lambda m: None)


def test_parse_and_resolve_classes():
    assert parse_classes("2, 5") == [2, 5]
    assert parse_classes("bus,car") == ["bus", "car"]
    assert parse_classes([]) is None and parse_classes(None) is None
    for empty in (" , ", "", " "):  # e.g. --classes "$UNSET": refused, not read as every class
        with pytest.raises(ValueError, match="names no class"):
            parse_classes(empty)
    assert resolve_classes(["Bus", 0], {0: "person", 5: "bus"}) == [5, 0]


def test_keyboard_interrupt_still_writes_summary_and_recording(clip, tmp_path):
    lines = []
    summary = run_demo(FakeDetector(interrupt_at=10), str(clip), show=False, record=tmp_path / "out.mp4",
                       save_json=tmp_path / "d.jsonl", log=lines.append)
    assert summary.interrupted and summary.frames == 10
    assert video_frame_count(tmp_path / "out.mp4") == 10
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 10
    assert any("stopped by the user" in line for line in lines)


def test_max_fps_caps_the_loop(clip):
    summary = run_demo(FakeDetector(), str(clip), show=False, max_fps=50, max_frames=15, log=lambda m: None)
    assert summary.frames == 15
    assert summary.mean_fps <= 55


def test_show_without_display_falls_back_to_headless(clip, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    lines = []
    summary = run_demo(FakeDetector(), str(clip), show=True, max_frames=2, log=lines.append)
    assert summary.frames == 2 and any("no display" in line for line in lines)


def _demo_script(tmp_path: Path, source: str, extra: str = "") -> str:
    return FAKE_DETECTOR + textwrap.dedent(f"""
        import sys
        from detdistill.demo import run_demo
        summary = run_demo(FakeDetector(delay=0.01), {source!r}, show=False, stats_every_s=0.2,
                           record={str(tmp_path / "out.mp4")!r}, save_json={str(tmp_path / "d.jsonl")!r})
        print("FRAMES", summary.frames, "INTERRUPTED", summary.interrupted, flush=True)
        {extra}
    """)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_playable_recording(tmp_path, signum):
    script = _demo_script(tmp_path, "synthetic?frames=100000&width=320&height=240")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        json_path = tmp_path / "d.jsonl"
        while time.monotonic() < deadline:
            if json_path.exists() and len(json_path.read_text().splitlines()) >= 8:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "summary:" in out and "stopped by the user" in out and "dropped frames" in out
    frames = int(out.split("FRAMES ")[1].split()[0])
    assert frames >= 8
    assert video_frame_count(tmp_path / "out.mp4") == frames
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == frames


def test_demo_never_imports_torch_or_ultralytics(tmp_path):
    script = _demo_script(tmp_path, "synthetic?frames=5&width=160&height=120", extra=textwrap.dedent("""
        from detdistill.demo.synthetic import sample_images
        sample_images()
        import detdistill.demo.cli
        bad = [m for m in ("torch", "ultralytics") if m in sys.modules]
        print("IMPORTED", bad)
    """).replace("\n", "\n        "))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stdout and "FRAMES " in done.stdout


# -- stats and overlay --------------------------------------------------------------------------
def test_run_stats_numbers():
    stats = RunStats(window_s=1.0)
    stats.start(now=0.0)
    for i in range(1, 101):                      # 100 frames at 50 FPS, latency 1..100 ms
        stats.add(float(i), {"inference": 10.0, "draw": 1.0}, now=i * 0.02)
    summary = stats.summary(dropped=7)
    assert summary.frames == 100 and summary.seconds == pytest.approx(2.0)
    assert summary.mean_fps == pytest.approx(50.0)
    assert summary.latency_p50_ms == pytest.approx(50.5) and summary.latency_p95_ms == pytest.approx(95.05)
    assert summary.dropped == 7 and summary.stage_ms["inference"] == pytest.approx(10.0)
    assert stats.fps() == pytest.approx(50.0, rel=0.03)
    assert "100 frames in 2.0 s, mean 50.0 FPS" in summary.format()
    assert "dropped 7" in stats.line(dropped=7)


def test_run_stats_keeps_a_bounded_sample():
    stats = RunStats(keep=50)
    for i in range(1000):
        stats.add(float(i % 10), {}, now=float(i))
    assert len(stats._latencies) == 50 and stats.summary().frames == 1000


def test_overlay_draws_boxes_labels_and_panel():
    image = np.full((240, 320, 3), 128, np.uint8)
    draw_detections(image, np.array([[20, 40, 200, 220]], np.float32), np.array([0.87], np.float32),
                    np.array([5]), {5: "bus"})
    color = np.array(class_color(5), np.uint8)
    assert (image == color).all(axis=2).sum() > 300          # the box outline and label background
    before = image.copy()
    draw_hud(image, hud_lines(29.7, 33.3, {"capture": 0.2, "inference": 25.0}, 3, 1))
    panel = image[10:40, 10:100]
    assert (panel < before[10:40, 10:100]).mean() > 0.5         # darkened panel
    assert (panel > 200).all(axis=2).sum() > 20                  # white text
    lines = hud_lines(29.7, 33.3, {"inference": 25.0}, 3, 1)
    assert "29.7 FPS" in lines[0] and "dropped 3" in lines[1] and lines[2] == "infer  25.0 ms"


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_help_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(demo_cli(), ["demo", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for text in ("--model", "--source", "--no-show", "--record", "--save-json", "--max-fps", "--classes", "csi://0"):
        assert text in result.output
    result = runner.invoke(demo_cli(), ["demo", "--model", str(tmp_path / "missing.onnx"), "--no-show"])
    assert result.exit_code == 2 and "missing.onnx does not exist. Export one" in result.output
    precious = tmp_path / "data.yaml"
    precious.write_text("names: [bus]\n")
    result = runner.invoke(demo_cli(), ["demo", "--model", str(tmp_path / "m.onnx"), "--no-show",
                                        "--save-json", str(precious)])
    assert result.exit_code == 2 and "should end in .jsonl" in result.output
    assert precious.read_text() == "names: [bus]\n"  # never opened for writing
    folder = tmp_path / "videos.mp4"
    folder.mkdir()
    for args, message in ((["--save-json", str(tmp_path / "d.json")], "should end in .jsonl: detections are "
                           "written as JSON Lines"),  # a .json of JSON Lines would not load with json.load
                          (["--record", str(folder)], f"--record {folder} is a folder: pass a file path in it, "
                           f"such as {folder / 'out.mp4'}"),
                          (["--save-json", ""], "--save-json is empty"), (["--record", ""], "--record is empty")):
        result = runner.invoke(demo_cli(), ["demo", "--model", str(tmp_path / "m.onnx"), "--no-show", *args])
        assert result.exit_code == 2 and message in result.output, result.output
    clip, second = tmp_path / "clip.mp4", tmp_path / "out-1.mp4"  # with two sources --record out.mp4 writes out-1.mp4
    clip.write_bytes(b"the user's only copy")
    second.write_bytes(b"another source")
    for args in (["-s", str(clip), "--record", str(clip)],
                 ["-s", str(clip), "-s", str(second), "--record", str(tmp_path / "out.mp4")]):
        result = runner.invoke(demo_cli(), ["demo", "--model", str(tmp_path / "m.onnx"), "--no-show", *args])
        assert result.exit_code == 2 and "is one of the demo's sources" in result.output, result.output
    assert clip.read_bytes() == b"the user's only copy" and second.read_bytes() == b"another source"


def test_cli_names_an_empty_source_and_an_empty_model_before_running(tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")  # an export that did not finish: ONNX Runtime would only say "No graph was found"
    result = runner.invoke(demo_cli(), ["demo", "--model", str(empty), "--no-show", "--max-frames", "1"])
    assert result.exit_code == 2 and "error: model" in result.output and "is empty (0 bytes" in result.output
    assert "export it again" in result.output and "Traceback" not in result.output
    # the source is checked before the model loads (the empty model is never opened), and no clip is run
    result = runner.invoke(demo_cli(), ["demo", "--model", str(empty), "-s", "", "--no-show", "--max-frames", "1"])
    assert result.exit_code == 2 and "error: the source is empty" in result.output, result.output


def test_cli_refuses_outputs_under_a_file_and_bad_sources_before_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    clip = write_clip("clip.mp4", frames=3, size=(160, 120))
    before = clip.read_bytes()
    model = ["demo", "--model", "m.onnx", "--no-show", "-s", "clip.mp4"]  # the model is never opened
    for option, out, fix in (("--record", "clip.mp4/out.mp4", "out.mp4"),
                             ("--save-json", "clip.mp4/x/d.jsonl", "d.jsonl")):
        result = runner.invoke(demo_cli(), [*model, option, out])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"error: {option} {out}: clip.mp4 is a file, not a folder; pass {option} a path in a folder, " \
               f"e.g. {fix}" in result.output
    assert clip.read_bytes() == before
    (tmp_path / "recordings").mkdir()  # a folder given as --record: named as one, not as a missing suffix
    result = runner.invoke(demo_cli(), [*model, "--record", "recordings"])
    assert result.exit_code == 2 and "error: --record recordings is a folder: pass a file path in it, such as " \
                                     "recordings/out.mp4" in result.output, result.output
    (tmp_path / "empty.mp4").touch()
    result = runner.invoke(demo_cli(), ["demo", "--model", "m.onnx", "--no-show", "-s", "empty.mp4"])
    assert result.exit_code == 2 and "source 'empty.mp4' is empty (0 bytes" in result.output, result.output
    result = runner.invoke(demo_cli(), ["demo", "--model", "m.onnx", "--no-show", "-s", "synthetic?fps=0"])
    assert result.exit_code == 2 and "error: source 'synthetic?fps=0': option fps must be an integer from 1 to " \
                                     "1000, got '0'" in result.output, result.output


class _FailingDetector:
    """A detector whose first frame fails (as a model of the wrong frame size does)."""

    names = {0: "person"}
    last_timings: dict = {}

    def __call__(self, frame):
        raise ValueError("this model takes 640x480 frames, got a 320x240 frame")


def test_a_run_that_fails_at_its_first_frame_keeps_the_earlier_detections_file(tmp_path, clip):
    """A service that restarts after such a failure must not lose what the run before it logged."""
    dets = tmp_path / "dets.jsonl"
    run_demo(FakeDetector(), str(clip), show=False, max_frames=5, save_json=dets, log=lambda m: None)
    before = dets.read_text()
    assert len(before.splitlines()) == 5
    with pytest.raises(ValueError, match="640x480"):
        run_demo(_FailingDetector(), str(clip), show=False, save_json=dets, log=lambda m: None)
    assert dets.read_text() == before
    run_demo(FakeDetector(), str(clip), show=False, max_frames=3, save_json=dets, log=lambda m: None)
    assert len(dets.read_text().splitlines()) == 3  # a run that reaches its frames replaces it, as documented


def test_strftime_codes_in_output_names_take_the_start_time(tmp_path, clip):
    """`--save-json dets-%Y%m%d-%H%M%S.jsonl` and the same in --record: each run writes its own files."""
    lines: list[str] = []
    run_demo(FakeDetector(), str(clip), show=False, max_frames=2, record=tmp_path / "run-%Y%m%d-%H%M%S.mp4",
             save_json=tmp_path / "dets-%Y%m%d-%H%M%S.jsonl", log=lines.append)
    time.sleep(1.1)  # the next second: another name
    run_demo(FakeDetector(), str(clip), show=False, max_frames=2, save_json=tmp_path / "dets-%Y%m%d-%H%M%S.jsonl",
             log=lambda m: None)
    dets, videos = sorted(tmp_path.glob("dets-*.jsonl")), sorted(tmp_path.glob("run-*.mp4"))
    assert len(dets) == 2 and len(videos) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert all(len(p.read_text().splitlines()) == 2 for p in dets) and video_frame_count(videos[0]) == 2
    assert "%" not in dets[0].name and time.strftime("%Y%m%d") in dets[0].name
    assert any(str(videos[0]) in line for line in lines)  # the log names the file it wrote
