"""The pipelined demo loop with fake detectors: bounded queues, newest-frame policy, several
sources, a failing source, clean shutdown, the CLI's --sync / repeated --source / one --model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import demo_cli, video_frame_count
from typer.testing import CliRunner

from detdistill.demo import run_demo
from detdistill.demo.capture import FrameSource, SourceError
from detdistill.demo.channel import Channel
from detdistill.demo.gather import SourceSet
from detdistill.demo.pipeline import Pipeline
from detdistill.demo.stages import CallStages, to_input_into
from detdistill.demo.synthetic import write_clip
from detdistill.runtime.letterbox import letterbox, to_input


class SlowDetector:
    """Boxes in the frame's middle after ``delay`` seconds (sleeping, like a GPU engine)."""

    names = {0: "person"}

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0
        self.threads: set[str] = set()
        self.last_timings: dict[str, float] = {}

    def __call__(self, frame: np.ndarray) -> SimpleNamespace:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        h, w = frame.shape[:2]
        value = float(frame[0, 0, 0])     # the frame's identity travels in the score
        return SimpleNamespace(boxes=np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], np.float32),
                               scores=np.array([value / 255], np.float32), class_ids=np.array([0]))


class FakeCamera:
    """A live grabber: frame k is filled with k % 256, one every ``period`` s; fails after ``fail_after``."""

    def __init__(self, period: float = 0.002, fail_after: int | None = None, size=(48, 64)) -> None:
        self.period, self.fail_after, self.size = period, fail_after, size
        self.count = 0
        self.description = "fake camera"
        self.fps = 1 / period if period else None

    def read(self) -> np.ndarray | None:
        if self.fail_after is not None and self.count >= self.fail_after:
            raise OSError("device unplugged")
        time.sleep(self.period)
        self.count += 1
        return np.full((*self.size, 3), self.count % 256, np.uint8)

    def close(self) -> None:
        pass


def live_source(name: str = "cam", **kwargs) -> FrameSource:
    """A live FrameSource that is opened once: reconnecting fails at once."""
    opened = []

    def factory():
        if opened:
            raise SourceError(f"{name} is gone")
        opened.append(1)
        return FakeCamera(**kwargs)

    return FrameSource(factory, live=True, name=name, max_reconnects=1, reconnect_delay_s=0.0)


def demo_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("demo-", "capture-", "recorder"))]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi", frames=30, size=(160, 120))


def test_channel_bounds_and_unblocks():
    channel: Channel[int] = Channel("x", 1)
    assert channel.put(1) and not channel.put(2, timeout=0.01)       # full: the second put waits, times out
    blocked = threading.Thread(target=channel.put, args=(3,))
    blocked.start()
    time.sleep(0.02)
    assert channel.abort() == [1]                                      # a producer blocked in put returns
    blocked.join(1.0)
    assert not blocked.is_alive() and channel.high_water == 1 and channel.get(0.01) is None
    ends: Channel[int] = Channel("y", 2)
    ends.put(1)
    ends.close()
    assert ends.get() == 1 and ends.get() is None and ends.finished


def test_to_input_into_is_bit_identical_to_the_runtime():
    rng = np.random.default_rng(0)
    boxed, _ = letterbox(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (96, 96))
    out = np.empty((3, 96, 96), np.float32)
    to_input_into(boxed, out)
    assert np.array_equal(out, to_input(boxed)[0])


def test_batch_size_follows_the_model():
    """Dynamic batch axis: one call for all sources, capped by a TensorRT engine's profile; fixed: one frame."""
    from detdistill.demo.stages import RuntimeStages
    from detdistill.runtime.metadata import ModelInfo

    def stages(input_shape, profile=None):
        engine = SimpleNamespace(get_tensor_profile_shape=lambda name, i: profile) if profile else None
        backend = SimpleNamespace(engine=engine, input_name="images", input_shape=input_shape, input_dtype=np.float32,
                                  info=ModelInfo(names={0: "a"}, imgsz=(64, 64)), infer=None)
        return RuntimeStages(SimpleNamespace(backend=backend, names={0: "a"}, imgsz=(64, 64)), max_batch=4)

    assert stages((-1, 3, 64, 64)).max_batch == 4
    assert stages((-1, 3, 64, 64), [(1, 3, 64, 64), (2, 3, 64, 64), (2, 3, 64, 64)]).max_batch == 2
    assert stages((1, 3, 64, 64)).max_batch == 1


def test_file_source_every_frame_in_order_with_stages_in_threads(clip):
    detector = SlowDetector(delay=0.004)
    seen = []
    summary = run_demo(detector, str(clip), show=False, log=lambda m: None,
                       on_frame=lambda i, image, dets: seen.append(int(round(float(dets.scores[0]) * 255))))
    values = [int(cv2.VideoCapture(str(clip)).read()[1][0, 0, 0])]
    assert summary.frames == 30 and summary.dropped == 0 and summary.mode == "pipelined"
    assert len(seen) == 30 and seen[0] == values[0]
    assert detector.threads == {"demo-infer"}                       # inference left the main thread
    assert 0.0 < summary.engine_busy <= 1.0 and summary.batch == 1.0
    assert all(v <= 1 for v in summary.queue_high_water.values()) and len(summary.queue_high_water) == 3
    assert "pipelined loop: engine busy" in summary.format()
    assert demo_threads() == []


def test_sync_runs_the_serial_loop_on_the_calling_thread(clip):
    detector = SlowDetector()
    summary = run_demo(detector, str(clip), show=False, sync=True, max_frames=5, log=lambda m: None)
    assert summary.frames == 5 and summary.mode == "serial" and summary.queue_high_water == {}
    assert detector.threads == {threading.current_thread().name}


def test_slow_output_stage_does_not_pile_frames_up():
    """The output stage stalls: the pipeline holds a few batches at most, the camera's extra frames are dropped."""
    source = live_source(period=0.001).start()
    sources = SourceSet([source])
    stop = threading.Event()
    pipeline = Pipeline(CallStages(SlowDetector()), sources, stop).start()
    try:
        sizes = []
        for _ in range(40):                      # 0.4 s without taking anything out
            time.sleep(0.01)
            sizes.append([len(c) for c in pipeline.channels])
        taken = source.delivered
        assert source.grabbed > 100                              # the camera kept going ...
        assert taken <= 6                                        # ... 3 channels of 1 + 3 stages hold the rest
        assert max(max(s) for s in sizes) <= 1 and all(v <= 1 for v in pipeline.high_water.values())
        assert source.dropped >= source.grabbed - taken - 1
        got = [pipeline.get(1.0) for _ in range(3)]              # it moves again once the output reads
        assert all(job is not None for job in got)
    finally:
        assert pipeline.shutdown() == []
        sources.close()
    assert demo_threads() == []


def test_newest_frame_policy_on_a_live_source():
    source = live_source(period=0.002)
    detector = SlowDetector(delay=0.02)                     # 50 FPS engine, 500 FPS camera
    indices = []
    summary = run_demo(detector, source, show=False, max_frames=12, log=lambda m: None,
                       on_frame=lambda i, image, dets: indices.append(int(image[-1, -1, 0])))
    assert summary.frames == 12 and summary.dropped > 20
    assert summary.dropped == source.dropped
    assert source.grabbed - source.delivered - source.dropped in (0, 1)
    steps = np.diff(indices) % 256
    assert (steps > 1).sum() >= 6                            # frames are skipped between processed ones


def test_failing_source_among_two_keeps_the_other_running(clip, tmp_path):
    bad = live_source("usb-cam", period=0.005, fail_after=4)
    lines: list[str] = []
    per_source: dict[int, int] = {}
    summary = run_demo(SlowDetector(delay=0.002), [bad, str(clip)], show=False, save_json=tmp_path / "d.jsonl",
                       record=tmp_path / "out.avi", log=lines.append)
    message = [line for line in lines if "source 0 (usb-cam) failed" in line]
    assert message and "gave up after 1 reconnect attempts" in message[0] and "1 other source(s) keep running" \
        in message[0]
    import json

    for line in (tmp_path / "d.jsonl").read_text().splitlines():
        record = json.loads(line)
        per_source[record["source"]] = per_source.get(record["source"], 0) + 1
    assert per_source[1] == 30 and 1 <= per_source.get(0, 0) <= 4      # every frame of the clip
    assert summary.sources[1].frames == 30 and summary.sources[0].error and summary.error
    assert "source 1 (" in summary.format() and "failed: usb-cam" in summary.format()
    assert video_frame_count(tmp_path / "out-1.avi") == 30 and video_frame_count(tmp_path / "out-0.avi") == per_source[0]
    assert demo_threads() == []


def test_file_that_fails_mid_read_is_an_error_not_its_end(clip):
    source = FrameSource(lambda: FakeCamera(period=0.0, fail_after=3), live=False, name="broken.mp4")
    lines: list[str] = []
    summary = run_demo(SlowDetector(), [source, str(clip)], show=False, log=lines.append)
    assert summary.sources[0].frames == 3 and summary.sources[1].frames == 30
    assert "read error: device unplugged" in summary.sources[0].error
    assert any("source 0 (broken.mp4) failed" in line for line in lines)


def test_several_sources_each_have_their_own_stats(clip):
    summary = run_demo(SlowDetector(delay=0.002), [str(clip), str(clip), str(clip)], show=False,
                       max_frames=10, log=lambda m: None)
    assert summary.frames == 30 and [s.frames for s in summary.sources] == [10, 10, 10]
    assert all(s.mean_fps > 0 and s.latency_p50_ms > 0 for s in summary.sources)
    assert summary.batch == 1.0        # a detector object runs one frame per call


def test_detection_times_of_several_sources_count_from_before_any_capture(clip, tmp_path):
    path = tmp_path / "d.jsonl"
    run_demo(SlowDetector(delay=0.002), [str(clip), str(clip)], show=False, max_frames=10, save_json=path,
             log=lambda m: None)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 20
    for source in (0, 1):
        times = [r["time_s"] for r in records if r["source"] == source]
        assert times[0] >= 0 and times == sorted(times)   # was: negative for a source grabbed before the loop began


def test_keyboard_interrupt_in_the_main_thread_shuts_the_threads_down(tmp_path):
    """Ctrl-C reaching the output stage (a second Ctrl-C, or the first outside the handler) stops
    everything: no thread is left, the recording holds exactly the frames that came out."""
    source = live_source(period=0.002)

    def interrupt(i, image, dets):
        if i == 7:
            raise KeyboardInterrupt

    lines: list[str] = []
    summary = run_demo(SlowDetector(delay=0.003), source, show=False, record=tmp_path / "o.avi",
                       on_frame=interrupt, log=lines.append)
    assert summary.interrupted and "stopped by the user" in summary.format()
    assert video_frame_count(tmp_path / "o.avi") == summary.frames >= 7
    assert demo_threads() == []


def test_stage_error_is_raised_after_a_clean_shutdown(clip):
    class Broken(SlowDetector):
        def __call__(self, frame):
            if self.calls == 3:
                raise RuntimeError("engine fell over")
            return super().__call__(frame)

    with pytest.raises(RuntimeError, match="engine fell over"):
        run_demo(Broken(), str(clip), show=False, log=lambda m: None)
    assert demo_threads() == []


def test_each_source_gets_its_own_window_and_q_quits(clip, monkeypatch):
    """The window calls (OpenCV GUI, stubbed): one window per source, on the main thread; q stops the run."""
    import detdistill.demo.app as app
    import detdistill.demo.output as output

    shown: list[tuple[str, str]] = []
    keys = iter([-1] * 5 + [ord("q")] + [-1] * 1000)
    gui = {"namedWindow": lambda name, flags: None, "destroyWindow": lambda name: None,
           "imshow": lambda name, image: shown.append((name, threading.current_thread().name)),
           "waitKey": lambda delay: next(keys), "getWindowProperty": lambda name, prop: 1.0}
    for name, fn in gui.items():
        monkeypatch.setattr(output.cv2, name, fn)
    monkeypatch.setattr(app, "display_problem", lambda: None)
    summary = run_demo(SlowDetector(), [str(clip), str(clip)], show=True, log=lambda m: None)
    assert {name for name, _ in shown} == {"detdistill demo [0]", "detdistill demo [1]"}
    assert {thread for _, thread in shown} == {threading.current_thread().name}
    assert summary.interrupted and summary.frames < 60 and demo_threads() == []


def test_sigint_with_two_sources_and_recordings(tmp_path):
    """Ctrl-C in a real process: exit 0, no native abort, every recording playable and complete."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    root = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(f"""
        import time, numpy as np
        from types import SimpleNamespace
        from detdistill.demo import run_demo

        class Det:
            names = {{0: "person"}}
            last_timings = {{}}
            def __call__(self, frame):
                time.sleep(0.004)
                return SimpleNamespace(boxes=np.array([[10, 10, 100, 100]], np.float32),
                                       scores=np.array([0.9], np.float32), class_ids=np.array([0]))

        src = "synthetic?frames=100000&width=320&height=240"
        summary = run_demo(Det(), [src, src], show=False, record={str(tmp_path / "o.mp4")!r},
                           save_json={str(tmp_path / "d.jsonl")!r}, stats_every_s=0.2)
        print("PER_SOURCE", *[s.frames for s in summary.sources], flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            path = tmp_path / "d.jsonl"
            if path.exists() and len(path.read_text().splitlines()) >= 20:
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped by the user" in out and "Fatal" not in out and "terminate called" not in out
    counts = [int(v) for v in out.split("PER_SOURCE ")[1].split()]
    assert min(counts) >= 5
    assert [video_frame_count(tmp_path / f"o-{i}.mp4") for i in range(2)] == counts


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_one_model_several_sources_and_sync(tmp_path):
    runner = CliRunner()
    result = runner.invoke(demo_cli(), ["demo", "--help"], env={"COLUMNS": "150"})
    assert result.exit_code == 0 and "--sync" in result.output and "repeat --source" in result.output
    result = runner.invoke(demo_cli(), ["demo", "-m", "a.onnx", "-m", "b.onnx", "-s", "0", "-s", "1"])
    assert result.exit_code == 2
    assert "--model given 2 times" in result.output and "one model" in result.output
