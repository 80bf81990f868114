"""Encoders of the demo's --record and --stream: pipeline strings, the choice of encoder through the
GStreamer probes, the errors before the run, the writers through a fake OpenCV GStreamer writer, the CLI."""

from __future__ import annotations

import shlex
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import demo_cli, video_frame_count
from typer.testing import CliRunner

from detdistill.demo import app as demo_app
from detdistill.demo import encoders as enc
from detdistill.demo import gstreamer as gst
from detdistill.demo import recorder as rec
from detdistill.demo import run_demo
from detdistill.demo.encoders import EncoderError
from detdistill.demo.synthetic import write_clip

HW_FILE = ["appsrc", "videoconvert", "nvvidconv", "nvv4l2h264enc", "h264parse", "mp4mux", "filesink"]


class Detector:
    names = {0: "person", 5: "bus"}
    last_timings: dict = {}

    def __call__(self, frame):
        h, w = frame.shape[:2]
        return SimpleNamespace(boxes=np.array([[w * 0.1, h * 0.2, w * 0.5, h * 0.8]], np.float32),
                               scores=np.array([0.9], np.float32), class_ids=np.array([5], np.int64))


class FakeWriter:
    """Stands in for ``cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, ...)``."""

    opened: list["FakeWriter"] = []

    def __init__(self, pipeline: str, fps: float, size: tuple[int, int], ok: bool = True) -> None:
        self.pipeline, self.fps, self.size, self.ok = pipeline, fps, size, ok
        self.shapes: list[tuple[int, ...]] = []
        self.released = False
        FakeWriter.opened.append(self)

    def isOpened(self) -> bool:
        return self.ok

    def write(self, image: np.ndarray) -> None:
        self.shapes.append(image.shape)

    def release(self) -> None:
        self.released = True


def pieces(pipeline: str) -> list[tuple[str, dict[str, str]]]:
    """``[(element or caps, {property: value})]`` of a pipeline string."""
    out = []
    for piece in pipeline.split(" ! "):
        head, *rest = shlex.split(piece)
        out.append((head, dict(item.split("=", 1) for item in rest)))
    return out


def element(pipeline: str, name: str) -> dict[str, str]:
    return next(props for head, props in pieces(pipeline) if head == name)


def before(pipeline: str, name: str) -> str:
    """The piece just before element ``name`` (its input caps)."""
    heads = [head for head, _ in pieces(pipeline)]
    return heads[heads.index(name) - 1]


@pytest.fixture
def gstreamer(monkeypatch):
    """Set what the probes report: ``gstreamer(opencv=True, missing={"x264enc"})``."""

    def set_probes(opencv: bool = True, missing: set[str] = frozenset()) -> None:
        monkeypatch.setattr(gst, "opencv_has_gstreamer", lambda: opencv)
        monkeypatch.setattr(gst, "gst_has_element", lambda name: name not in missing)

    return set_probes


@pytest.fixture
def fake_writer(monkeypatch):
    FakeWriter.opened = []
    monkeypatch.setattr(rec, "open_gstreamer_writer", lambda p, fps, size: FakeWriter(p, fps, size))
    return FakeWriter


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=20, size=(320, 240))


# -- pipeline strings ---------------------------------------------------------------------------
def test_hardware_file_pipeline(tmp_path):
    path = tmp_path / "my run" / "out.mp4"          # a space: the location must stay one value
    p = enc.file_pipeline(path, "nvv4l2h264enc", 1280, 720, 29.97, bitrate=4_000_000)
    assert enc.pipeline_elements(p) == HW_FILE
    heads = [head for head, _ in pieces(p)]
    assert heads[1] == "video/x-raw,format=BGR,width=1280,height=720"        # what OpenCV feeds appsrc
    assert before(p, "nvvidconv") == "video/x-raw,format=BGRx"              # nvvidconv takes BGRx, not BGR
    assert before(p, "nvv4l2h264enc") == "video/x-raw(memory:NVMM),format=NV12"
    props = element(p, "nvv4l2h264enc")
    assert props["bitrate"] == "4000000" and props["iframeinterval"] == "30" and props["idrinterval"] == "30"
    assert element(p, "filesink") == {"location": str(path)}


@pytest.mark.parametrize("suffix, mux", [(".mp4", "mp4mux"), (".m4v", "mp4mux"), (".mov", "qtmux"),
                                         (".mkv", "matroskamux"), (".avi", "avimux")])
def test_muxer_follows_the_suffix_and_h265_its_parser(suffix, mux):
    p = enc.file_pipeline(f"out{suffix}", "nvv4l2h265enc", 640, 480, 25.0)
    names = enc.pipeline_elements(p)
    assert names[-3:] == ["h265parse", mux, "filesink"] and "nvv4l2h265enc" in names
    assert element(p, "nvv4l2h265enc")["iframeinterval"] == "25"
    assert set(enc.MUX_BY_SUFFIX) == set(rec.FOURCC_BY_SUFFIX)      # both writers take the same suffixes


def test_x264_pipeline_uses_kbits_and_i420():
    p = enc.file_pipeline("o.mkv", "x264enc", 640, 480, 15.0, bitrate=3_000_000)
    assert enc.pipeline_elements(p) == ["appsrc", "videoconvert", "x264enc", "h264parse", "matroskamux", "filesink"]
    assert before(p, "x264enc") == "video/x-raw,format=I420"
    props = element(p, "x264enc")
    assert props["bitrate"] == "3000" and props["key-int-max"] == "15" and props["tune"] == "zerolatency"


def test_default_bitrate_follows_the_frame_size():
    assert enc.default_bitrate(1920, 1080, 30) == 6_200_000
    assert enc.default_bitrate(320, 240, 30) == enc.MIN_BITRATE
    p = enc.file_pipeline("o.mp4", "nvv4l2h264enc", 1280, 720, 30.0)
    assert element(p, "nvv4l2h264enc")["bitrate"] == "2800000"


def test_udp_and_rtsp_stream_pipelines():
    p = enc.stream_pipeline(enc.parse_stream("udp://192.168.1.20:5000"), "nvv4l2h264enc", 640, 480, 30.0)
    assert enc.pipeline_elements(p) == ["appsrc", "videoconvert", "nvvidconv", "nvv4l2h264enc", "h264parse",
                                        "rtph264pay", "udpsink"]
    assert element(p, "rtph264pay") == {"config-interval": "1", "pt": "96"}
    assert element(p, "udpsink")["host"] == "192.168.1.20" and element(p, "udpsink")["port"] == "5000"
    assert element(p, "udpsink")["sync"] == "false"
    p = enc.stream_pipeline(enc.parse_stream("udp://10.0.0.9:6000"), "nvv4l2h265enc", 640, 480, 30.0)
    assert enc.pipeline_elements(p)[-3:] == ["h265parse", "rtph265pay", "udpsink"]
    p = enc.stream_pipeline(enc.parse_stream("rtsp://server/cam"), "x264enc", 640, 480, 30.0)
    assert enc.pipeline_elements(p)[-2:] == ["h264parse", "rtspclientsink"]
    assert element(p, "rtspclientsink") == {"location": "rtsp://server:8554/cam", "protocols": "tcp"}


def test_stream_targets_per_source():
    assert [t.url for t in enc.stream_targets("udp://h:5000", 3)] == ["udp://h:5000", "udp://h:5001", "udp://h:5002"]
    assert [t.url for t in enc.stream_targets("rtsp://s:8554/cam", 2)] == ["rtsp://s:8554/cam-0", "rtsp://s:8554/cam-1"]
    assert enc.stream_targets("udp://h:5000", 1)[0].port == 5000
    for bad in ("udp://h", "http://h:80/x", "5000", "udp://:5000"):
        with pytest.raises(EncoderError, match="--stream"):
            enc.parse_stream(bad)


def test_receiver_line_matches_the_stream():
    target = enc.parse_stream("udp://192.168.1.20:5002")
    line = enc.receiver_command(target)
    assert "udpsrc port=5002" in line and "encoding-name=H264" in line and "rtph264depay" in line
    assert "encoding-name=H265" in enc.receiver_command(target, "h265")


# -- choosing the encoder -------------------------------------------------------------------------
def test_auto_uses_the_hardware_encoder_when_everything_is_there(gstreamer):
    gstreamer(opencv=True)
    assert enc.choose_encoder("auto", record="o.mp4") == ("nvv4l2h264enc", "opencv")
    assert enc.choose_encoder("auto", stream=enc.parse_stream("udp://h:5000")) == ("nvv4l2h264enc", "x264enc")


def test_auto_falls_back_without_the_jetson_elements(gstreamer):
    gstreamer(opencv=True, missing={"nvv4l2h264enc", "nvvidconv"})
    assert enc.choose_encoder("auto", record="o.mp4") == ("opencv", None)
    assert enc.choose_encoder("auto", stream=enc.parse_stream("udp://h:5000")) == ("x264enc", None)
    gstreamer(opencv=True, missing={"matroskamux"})                       # any element of the pipeline counts
    assert enc.choose_encoder("auto", record="o.mkv") == ("opencv", None)
    assert enc.choose_encoder("auto", record="o.mp4") == ("nvv4l2h264enc", "opencv")


def test_auto_without_gstreamer_records_with_opencv_and_cannot_stream(gstreamer):
    gstreamer(opencv=False)
    assert enc.plan_video("o.mp4", None, "auto").record_encoder == "opencv"
    with pytest.raises(EncoderError, match="needs OpenCV built with GStreamer"):
        enc.plan_video("o.mp4", "udp://h:5000", "auto")
    with pytest.raises(EncoderError, match="--record out/o.mkv with x264enc needs OpenCV built with GStreamer"):
        enc.plan_video("out/o.mkv", None, "x264enc")  # named as given, folder and all


def test_missing_encoder_names_the_element_and_the_fix(gstreamer):
    gstreamer(opencv=True, missing={"nvv4l2h265enc"})
    with pytest.raises(EncoderError) as info:
        enc.plan_video("run.mp4", None, "nvv4l2h265enc")
    message = str(info.value)
    assert "nvv4l2h265enc" in message and "nvidia-l4t-gstreamer" in message and "--encoder opencv" in message
    assert "gst-inspect-1.0 nvv4l2h265enc" in message
    gstreamer(opencv=True, missing={"rtspclientsink"})
    with pytest.raises(EncoderError, match="rtspclientsink.*gstreamer1.0-rtsp"):
        enc.plan_video(None, "rtsp://server:8554/demo", "auto")
    gstreamer(opencv=True, missing={"nvv4l2h264enc", "x264enc"})
    with pytest.raises(EncoderError, match="x264enc.*gstreamer1.0-plugins-ugly"):
        enc.plan_video(None, "udp://h:5000", "auto")


def test_named_encoder_without_gstreamer_and_other_bad_choices(gstreamer):
    gstreamer(opencv=False)
    with pytest.raises(EncoderError, match="OpenCV built with GStreamer.*--encoder opencv"):
        enc.plan_video("o.mp4", None, "nvv4l2h264enc")
    gstreamer(opencv=True)
    with pytest.raises(EncoderError, match="only writes files"):
        enc.plan_video(None, "udp://h:5000", "opencv")
    with pytest.raises(EncoderError, match="use one of auto"):
        enc.plan_video("o.mp4", None, "nvenc")
    with pytest.raises(EncoderError, match="--record"):
        enc.plan_video("o.webm", None, "auto")
    plan = enc.plan_video("o.mp4", "udp://h:5000", "x264enc", bitrate_mbps=2.5)
    assert (plan.record_encoder, plan.stream_encoder, plan.bitrate) == ("x264enc", "x264enc", 2_500_000)
    for encoder, bitrate, words in (("x264enc", 0.0, "--encoder x264enc set how"), ("auto", 4.0, "--bitrate 4 set how"),
                                    ("x264enc", 4.0, "--encoder x264enc and --bitrate 4 set how")):
        with pytest.raises(EncoderError, match=f"{words} --record and --stream encode, and neither is given"):
            enc.plan_video(None, None, encoder, bitrate_mbps=bitrate)  # was: ignored without a word
    with pytest.raises(EncoderError, match=r"--bitrate 4: OpenCV's writer \(--encoder opencv\) takes no bitrate"):
        enc.plan_video("o.mp4", None, "opencv", bitrate_mbps=4.0)
    assert enc.plan_video(None, None, "auto") == enc.VideoPlan()  # no video at all: the defaults, unused


# -- writers through the fake OpenCV GStreamer writer ---------------------------------------------------
def test_recorder_feeds_the_gstreamer_pipeline(tmp_path, fake_writer):
    recorder = rec.VideoRecorder(tmp_path / "o.mkv", fps=25.0, encoder="nvv4l2h264enc", bitrate=4_000_000)
    image = np.zeros((240, 320, 3), np.uint8)
    for frame in (image, image, np.zeros((480, 640, 3), np.uint8)):   # a later frame of another size
        recorder.write(frame)
    recorder.close()
    (writer,) = fake_writer.opened
    assert (writer.fps, writer.size) == (25.0, (320, 240)) and writer.released
    assert writer.shapes == [(240, 320, 3)] * 3
    assert "width=320,height=240" in writer.pipeline and enc.pipeline_elements(writer.pipeline)[-2] == "matroskamux"
    assert recorder.describe() == "nvv4l2h264enc (Jetson hardware H.264, 4.0 Mbit/s)"


def test_a_writer_that_does_not_open_falls_back_or_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(rec, "open_gstreamer_writer", lambda p, fps, size: FakeWriter(p, fps, size, ok=False))
    lines: list[str] = []
    recorder = rec.VideoRecorder(tmp_path / "a.mp4", encoder="nvv4l2h264enc", fallback="opencv", log=lines.append)
    for _ in range(5):
        recorder.write(np.full((120, 160, 3), 90, np.uint8))
    recorder.close()
    assert recorder.encoder == "opencv" and video_frame_count(tmp_path / "a.mp4") == 5
    assert any("nvv4l2h264enc did not open" in line and "using opencv" in line for line in lines)
    strict = rec.VideoRecorder(tmp_path / "b.mp4", encoder="nvv4l2h264enc")
    with pytest.raises(RuntimeError, match="could not start the nvv4l2h264enc pipeline.*appsrc"):
        strict.write(np.zeros((120, 160, 3), np.uint8))
    streamer = rec.VideoStreamer(enc.parse_stream("udp://h:5000"), encoder="nvv4l2h264enc", fallback="x264enc",
                                 log=lines.append)
    with pytest.raises(RuntimeError, match="x264enc"):          # the fallback does not open either
        streamer.write(np.zeros((120, 160, 3), np.uint8))


def test_run_demo_streams_each_source_to_its_own_port(clip, tmp_path, gstreamer, fake_writer):
    gstreamer(opencv=True)
    lines: list[str] = []
    summary = run_demo(Detector(), [str(clip), str(clip)], show=False, stream="udp://127.0.0.1:5000",
                       record=tmp_path / "o.mp4", log=lines.append)
    assert summary.frames == 40
    streams = sorted((w for w in fake_writer.opened if "udpsink" in w.pipeline), key=lambda w: w.pipeline)
    assert [element(w.pipeline, "udpsink")["port"] for w in streams] == ["5000", "5001"]
    assert [len(w.shapes) for w in streams] == [20, 20]
    files = sorted(element(w.pipeline, "filesink")["location"] for w in fake_writer.opened if "filesink" in w.pipeline)
    assert files == [str(tmp_path / "o-0.mp4"), str(tmp_path / "o-1.mp4")]
    assert any(line.startswith("streaming: udp://127.0.0.1:5001 with nvv4l2h264enc") for line in lines)
    assert any("udpsrc port=5001" in line for line in lines)
    assert any(line.startswith(f"recording: {tmp_path / 'o-0.mp4'} with nvv4l2h264enc") for line in lines)


def test_auto_falls_back_to_opencv_when_the_hardware_pipeline_does_not_open(clip, tmp_path, gstreamer):
    gstreamer(opencv=True)    # the probes say yes; this OpenCV cannot open a GStreamer writer after all
    lines: list[str] = []
    run_demo(Detector(), str(clip), show=False, record=tmp_path / "o.mp4", log=lines.append)
    assert any("nvv4l2h264enc did not open" in line for line in lines)
    assert any(line.startswith(f"recording: {tmp_path / 'o.mp4'} (20 frames, opencv (mp4v") for line in lines)
    assert video_frame_count(tmp_path / "o.mp4") == 20


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_records_with_the_opencv_encoder(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(demo_app, "load_detector", lambda *args, **kwargs: Detector())
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(demo_cli(), ["demo", "-m", str(tmp_path / "m.onnx"), "-s", str(clip), "--no-show",
                                         "--record", str(out), "--encoder", "opencv"])
    assert result.exit_code == 0, result.output
    assert f"recording: {out} with opencv (mp4v, software)" in result.output
    assert video_frame_count(out) == 20


def test_cli_refuses_an_encoder_that_cannot_run_before_the_model_loads(clip, tmp_path, monkeypatch, gstreamer):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the encoder was checked")

    monkeypatch.setattr(demo_app, "load_detector", never)
    gstreamer(opencv=False)
    runner = CliRunner()
    base = ["demo", "-m", str(tmp_path / "m.onnx"), "-s", str(clip), "--no-show"]
    result = runner.invoke(demo_cli(), base + ["--record", str(tmp_path / "o.mp4"), "--encoder", "nvv4l2h264enc"])
    assert result.exit_code == 2 and "OpenCV built with GStreamer" in result.output
    result = runner.invoke(demo_cli(), base + ["--stream", "udp://127.0.0.1:5000"])
    assert result.exit_code == 2 and "--stream" in result.output and "GStreamer" in result.output
    gstreamer(opencv=True, missing={"nvv4l2h264enc"})
    result = runner.invoke(demo_cli(), base + ["--record", str(tmp_path / "o.mp4"), "--encoder", "nvv4l2h264enc"])
    assert result.exit_code == 2 and "no nvv4l2h264enc" in result.output
    assert not (tmp_path / "o.mp4").exists()


class FailingWriter(FakeWriter):
    """A pipeline that breaks after its first frame (e.g. a stream whose receiver went away)."""

    def write(self, image: np.ndarray) -> None:
        if self.shapes:
            time.sleep(0.3)       # meanwhile the demo fills the queue and waits on it
            raise OSError("broken pipe")
        super().write(image)


def test_an_encoder_that_fails_mid_recording_never_blocks_the_demo(tmp_path, monkeypatch):
    monkeypatch.setattr(rec, "open_gstreamer_writer", lambda p, fps, size: FailingWriter(p, fps, size))
    recorder = rec.VideoRecorder(tmp_path / "o.mkv", queue_size=2, encoder="nvv4l2h264enc")
    raised: list[BaseException] = []

    def feed() -> None:
        try:
            for _ in range(50):
                recorder.write(np.zeros((64, 64, 3), np.uint8))
        except rec.RecordingError as exc:
            raised.append(exc)
        finally:
            try:
                recorder.close(timeout_s=10)
            except rec.RecordingError as exc:
                raised.append(exc)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    feeder.join(20)
    assert not feeder.is_alive(), "write() or close() blocked on the queue of a failed encoder"
    assert raised and all("broken pipe" in str(exc) for exc in raised)


def test_close_gives_up_on_an_encoder_that_never_finishes(tmp_path, monkeypatch):
    release = threading.Event()

    class StuckWriter(FakeWriter):
        def release(self) -> None:     # end-of-stream that never completes
            release.wait(30)

    monkeypatch.setattr(rec, "open_gstreamer_writer", lambda p, fps, size: StuckWriter(p, fps, size))
    recorder = rec.VideoRecorder(tmp_path / "o.mkv", encoder="nvv4l2h264enc")
    recorder.write(np.zeros((64, 64, 3), np.uint8))
    try:
        with pytest.raises(rec.RecordingError, match=r"did not finish within 0.2 s.*may be incomplete"):
            recorder.close(timeout_s=0.2)
        with pytest.raises(rec.RecordingError, match="did not finish"):
            recorder.close()           # idempotent: the same error, without a second wait
    finally:
        release.set()
    _assert_the_encoder_thread_ends()


def test_frames_of_another_size_are_letterboxed_into_the_recording_not_stretched():
    portrait = np.full((200, 100, 3), 255, np.uint8)            # 100 wide, 200 high, into a 320x240 landscape video
    out = rec.fit_into(portrait, (320, 240))
    assert out.shape == (240, 320, 3)
    white_cols = np.flatnonzero(out[120, :, 0] > 128)
    white_rows = np.flatnonzero(out[:, 160, 0] > 128)
    assert len(white_rows) == 240 and 118 <= len(white_cols) <= 122       # 100x200 scaled by 1.2: 120x240
    assert 95 <= white_cols[0] <= 105 and out[:, :90].max() == 0 and out[:, 230:].max() == 0  # centred, black sides
    same = np.zeros((240, 320, 3), np.uint8)
    assert rec.fit_into(same, (320, 240)) is same


def test_close_gives_up_on_an_encoder_stuck_with_a_full_queue(tmp_path, monkeypatch):
    release = threading.Event()

    class StuckWriter(FakeWriter):
        def write(self, image: np.ndarray) -> None:   # the first frame never returns: the queue fills up
            release.wait(30)

    monkeypatch.setattr(rec, "open_gstreamer_writer", lambda p, fps, size: StuckWriter(p, fps, size))
    recorder = rec.VideoRecorder(tmp_path / "o.mkv", queue_size=2, encoder="nvv4l2h264enc")
    for _ in range(3):                                  # one taken by the encoder, two queued
        recorder.write(np.zeros((64, 64, 3), np.uint8))
    time.sleep(0.2)
    try:
        started = time.monotonic()
        with pytest.raises(rec.RecordingError, match=r"did not finish within 0.5 s"):
            recorder.close(timeout_s=0.5)           # was: blocked on the full queue, whatever the timeout
        assert time.monotonic() - started < 5
    finally:
        release.set()
    _assert_the_encoder_thread_ends()


def _assert_the_encoder_thread_ends() -> None:
    """Once a stuck encoder returns, its abandoned thread stops (no thread left behind for later tests)."""
    for thread in [t for t in threading.enumerate() if t.name == "recorder"]:
        thread.join(10)
        assert not thread.is_alive()
