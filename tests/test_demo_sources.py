"""Source parsing, GStreamer pipelines per source kind, open attempts and file/folder grabbers."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detdistill.demo import gstreamer as gst
from detdistill.demo.capture import FrameSource, SourceError
from detdistill.demo.image_source import ImageGrabber
from detdistill.demo.sources import (
    CvGrabber,
    SourceSpec,
    capture_attempts,
    open_source,
    parse_source,
)
from detdistill.demo.synthetic import SyntheticCamera, sample_images, write_clip


@pytest.mark.parametrize(
    ("text", "kind", "target", "index"),
    [
        (0, "camera", "/dev/video0", 0),
        ("2", "camera", "/dev/video2", 2),
        ("/dev/video1", "camera", "/dev/video1", 1),
        ("/dev/v4l/by-id/usb-cam-video-index0", "camera", "/dev/v4l/by-id/usb-cam-video-index0", None),
        ("csi://1", "csi", "csi://1", 1),
        ("rtsp://user:pw@cam.local:554/stream1?channel=2", "rtsp", "rtsp://user:pw@cam.local:554/stream1?channel=2", None),
        ("https://example.com/live.m3u8", "stream", "https://example.com/live.m3u8", None),
        ("synthetic", "synthetic", "synthetic", None),
        (None, "auto", "", None),
    ],
)
def test_parse_source_kinds(text, kind, target, index):
    spec = parse_source(text)
    assert (spec.kind, spec.target, spec.index) == (kind, target, index)
    assert spec.live == (kind in {"camera", "csi", "rtsp", "stream", "synthetic"})


def test_parse_source_options():
    spec = parse_source("/dev/video0?width=640&height=480&fps=60&format=raw")
    assert (spec.width, spec.height, spec.fps, spec.options) == (640, 480, 60, {"format": "raw"})
    spec = parse_source("csi://0?width=1920&height=1080&fps=30&mode=2&flip=2")
    assert (spec.width, spec.height, spec.options) == (1920, 1080, {"mode": "2", "flip": "2"})
    spec = parse_source("rtsp://cam/stream#codec=h265&latency=50")
    assert spec.target == "rtsp://cam/stream" and spec.options == {"codec": "h265", "latency": "50"}
    spec = parse_source("synthetic?frames=12&width=320&height=240")
    assert (spec.width, spec.height, spec.options) == (320, 240, {"frames": "12"})
    with pytest.raises(SourceError, match="integer"):
        parse_source("/dev/video0?width=wide")
    with pytest.raises(SourceError, match="csi://<sensor-id>"):
        parse_source("csi://front")


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_source_is_refused_not_read_as_no_source(text):
    # `demo -s ""` (an unset shell variable) is a mistake, not a --source left out
    with pytest.raises(SourceError, match="the source is empty .* leave --source out for camera 0"):
        parse_source(text)


def test_parse_files_and_folders(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 16)   # parsing reads no content; an empty file is refused
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8")
    assert parse_source(str(video)).kind == "file" and not parse_source(str(video)).live
    assert parse_source(str(image)).kind == "images"
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(SourceError, match=r"source '.*empty\.mp4' is empty \(0 bytes"):
        parse_source(str(tmp_path / "empty.mp4"))
    assert parse_source(str(tmp_path)).kind == "images"
    with pytest.raises(SourceError, match=r"source '.*missing\.mp4' does not exist: check the path"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match=r"does not exist \(nor does its folder .*gone\)"):
        parse_source(str(tmp_path / "gone" / "clip.mp4"))
    with pytest.raises(SourceError, match="not a camera index"):
        parse_source("webcam")  # neither a path nor any source form
    with pytest.raises(SourceError, match=r"source 'frames/' does not exist: check the path"):
        parse_source("frames/")  # a folder in the current one, by its trailing slash


def _read_all(src) -> list:
    frames = []
    while (frame := src.read(timeout=2.0)) is not None or not src.finished:
        if frame is not None:
            frames.append(frame)
    return frames


def test_only_the_exact_name_synthetic_is_the_generated_clip(tmp_path, monkeypatch):
    # a user's video or folder whose name starts with "synthetic" is played, not the built-in clip
    monkeypatch.chdir(tmp_path)
    write_clip("synthetic_drive.mp4", frames=5, size=(160, 120))
    Path("synthetic_frames").mkdir()
    cv2.imwrite("synthetic_frames/a.png", np.full((24, 32, 3), 200, np.uint8))
    assert (parse_source("synthetic_drive.mp4").kind, parse_source("synthetic_frames").kind) == ("file", "images")
    with open_source("synthetic_drive.mp4") as src:
        frames = _read_all(src)
        assert "synthetic_drive.mp4" in src.description and not src.description.startswith("synthetic ")
        assert len(frames) == 5 and frames[0].image.shape == (120, 160, 3)
    with open_source("synthetic_frames/") as src:
        assert [f.image.shape for f in _read_all(src)] == [(24, 32, 3)]
    for text in ("synthetic", "SYNTHETIC", "synthetic?frames=3"):
        assert parse_source(text).kind == "synthetic"
    with pytest.raises(SourceError, match="does not exist"):
        parse_source("synthetic_missing.mp4")


@pytest.mark.parametrize(("text", "message"), [
    ("synthetic?frames=abc", r"option frames must be an integer from 1 to \d+, got 'abc'; "
                             r"e\.g\. synthetic\?frames=300"),
    ("synthetic?frames=-5", r"option frames must be an integer from 1 .*got '-5'"),
    ("synthetic?frames=0", r"option frames must be an integer from 1 .*got '0'"),
    ("synthetic?fps=0", r"option fps must be an integer from 1 to 1000, got '0'; e\.g\. synthetic\?fps=30"),
    ("synthetic?width=99999", r"option width must be an integer from 16 to 4096, got '99999'"),
    ("synthetic?frame=5", r"unknown option 'frame'; the synthetic source takes frames, fps, width, height: did you "
                          r"mean frames\?"),
    ("synthetic?widht=1280", r"unknown option 'widht'.*did you mean width\?"),
    ("synthetic?colour=red", r"unknown option 'colour'.*takes frames, fps, width, height: remove it"),
    ("/dev/video0?format=yuyv", r"option format must be one of mjpeg, mjpg, jpeg, raw, got 'yuyv'"),
    ("csi://0?flip=9", r"option flip must be an integer from 0 to 7, got '9'"),
    ("rtsp://cam/s#latncy=50", r"unknown option 'latncy'; the rtsp source takes codec, latency: did you mean latency"),
])
def test_bad_source_options_are_refused_naming_the_option(text, message):
    with pytest.raises(SourceError, match=rf"^source '{re.escape(text)}': {message}"):
        parse_source(text)


def test_checked_options_reach_the_clip():
    spec = parse_source("synthetic?frames=4&fps=60&width=160&height=120")
    assert (spec.width, spec.height, spec.fps, spec.options) == (160, 120, 60, {"frames": "4"})
    assert parse_source("rtsp://cam/s#codec=H265").options == {"codec": "h265"}   # choices in lower case
    with open_source(spec) as src:
        assert src.description == "synthetic 160x120@60 (4 frames)"
        assert len(_read_all(src)) + src.dropped == 4
    with pytest.raises(ValueError, match="fps > 0"):  # a SourceSpec built in Python is not parsed: the clip checks
        SyntheticCamera((160, 120), fps=0)


@pytest.mark.parametrize("name", ["2024", "synthetic"])
def test_a_camera_index_or_synthetic_that_is_also_a_folder_here_is_refused(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    Path(name).mkdir()
    cv2.imwrite(f"{name}/f0.png", np.full((24, 32, 3), 90, np.uint8))
    other = "/dev/video2024 for the camera" if name.isdigit() else "synthetic?frames=300 for the clip"
    with pytest.raises(SourceError, match=rf"source '{name}' is ambiguous: .*there is a folder {name} here; pass "
                                          rf"\./{name} for the folder, or {re.escape(other)}"):
        parse_source(name)
    with open_source(f"./{name}") as src:        # the fix the message names plays the folder
        assert [f.image.shape for f in _read_all(src)] == [(24, 32, 3)]
    assert parse_source(f"{name}?width=320").kind == ("camera" if name.isdigit() else "synthetic")
    Path("7").mkdir()
    assert parse_source(7).target == "/dev/video7"  # an int from Python is a camera, whatever is here


def test_no_source_falls_back_to_the_clip_even_with_a_synthetic_folder_here(tmp_path, monkeypatch):
    if os.path.exists("/dev/video0"):
        pytest.skip("a camera is plugged in: no source opens it instead of the clip")
    monkeypatch.chdir(tmp_path)
    Path("synthetic").mkdir()
    with open_source(None) as src:
        assert src.description.startswith("synthetic 640x480@30")


def test_the_clip_says_when_it_has_no_photos_to_pan_over(monkeypatch):
    """Without ultralytics (a runtime or Jetson install) the clip is a drawn scene: a COCO model finds nothing in it,
    which a user checking that the model works must be told."""
    from detdistill.demo import sources

    lines = []
    with open_source("synthetic?frames=2", log=lines.append) as src:
        assert src.read() is not None
    assert any("drawn scene" in line for line in lines) == (not sample_images())
    monkeypatch.setattr(sources, "sample_images", lambda: [])
    lines.clear()
    with open_source("synthetic?frames=2", log=lines.append) as src:
        assert src.read() is not None
    assert any(line.startswith("synthetic clip: a drawn scene, in which a COCO model finds nothing") and
               "--source a video" in line for line in lines), lines


# -- GStreamer pipeline strings -----------------------------------------------------------------
APPSINK = "appsink drop=1 max-buffers=1 sync=false"


def test_csi_pipeline():
    spec = parse_source("csi://1?width=1920&height=1080&fps=30&mode=2&flip=2")
    (attempt,) = capture_attempts(spec, gstreamer=True, has_element=lambda name: True)
    assert attempt.api == cv2.CAP_GSTREAMER
    assert attempt.target == (
        "nvarguscamerasrc sensor-id=1 sensor-mode=2 ! "
        "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! " + APPSINK
    )


def test_csi_without_gstreamer_explains_the_fix():
    with pytest.raises(SourceError, match="GStreamer.*--system-site-packages"):
        capture_attempts(parse_source("csi://0"), gstreamer=False)


@pytest.mark.parametrize(
    ("elements", "first_label", "decode"),
    [
        ({"nvv4l2decoder", "nvjpegdec"}, "GStreamer MJPEG nvv4l2decoder (hardware)",
         "nvv4l2decoder mjpd=1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert"),
        ({"nvjpegdec"}, "GStreamer MJPEG nvjpegdec (hardware)", "nvjpegdec ! video/x-raw,format=I420 ! videoconvert"),
    ],
)
def test_usb_mjpeg_hardware_decode_when_gstreamer_has_it(elements, first_label, decode):
    spec = parse_source("/dev/video0?width=1280&height=720&fps=30")
    attempts = capture_attempts(spec, gstreamer=True, has_element=elements.__contains__)
    assert attempts[0].label == first_label and attempts[0].api == cv2.CAP_GSTREAMER
    pipeline = attempts[0].target
    assert pipeline.startswith("v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1 ! ")
    assert decode in pipeline and pipeline.endswith(APPSINK)
    assert [a.label for a in attempts[1:]] == ["V4L2 MJPEG (software decode)", "V4L2 native format"]


def test_usb_camera_software_fallback_without_gstreamer():
    attempts = capture_attempts(parse_source("0"), gstreamer=False)
    labels = [a.label for a in attempts]
    assert labels == ["V4L2 MJPEG (software decode)", "V4L2 native format"]
    props = dict(attempts[0].props)
    assert props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert int(props[cv2.CAP_PROP_FOURCC]) == cv2.VideoWriter.fourcc(*"MJPG")
    if sys.platform.startswith("linux"):
        assert attempts[0].api == cv2.CAP_V4L2 and attempts[0].target == "/dev/video0"
    raw = capture_attempts(parse_source("0?format=raw"), gstreamer=True, has_element=lambda n: True)
    assert [a.label for a in raw] == ["V4L2 native format"]


def test_other_pipeline_builders():
    assert gst.usb_mjpeg_pipeline("/dev/video0", 640, 480, 30, "jpegdec") == (
        "v4l2src device=/dev/video0 ! image/jpeg,width=640,height=480,framerate=30/1 ! jpegdec ! "
        "videoconvert ! video/x-raw,format=BGR ! " + APPSINK
    )
    with pytest.raises(ValueError):
        gst.usb_mjpeg_pipeline("/dev/video0", 640, 480, 30, "magic")
    with pytest.raises(ValueError):
        gst.rtsp_pipeline("rtsp://x", codec="vp9")


def test_rtsp_attempts():
    spec = parse_source("rtsp://cam/s#codec=h265&latency=50")
    attempts = capture_attempts(spec, gstreamer=True, has_element={"nvv4l2decoder", "avdec_h265"}.__contains__)
    assert [a.label for a in attempts] == ["GStreamer RTSP h265 nvv4l2decoder", "GStreamer RTSP h265 avdec",
                                           "FFmpeg RTSP (TCP)"]
    assert attempts[0].target == (
        "rtspsrc location=rtsp://cam/s latency=50 protocols=tcp ! rtph265depay ! h265parse ! nvv4l2decoder ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! " + APPSINK
    )
    assert "avdec_h265 ! videoconvert" in attempts[1].target
    plain = capture_attempts(parse_source("rtsp://cam/s"), gstreamer=False)
    assert [a.label for a in plain] == ["FFmpeg RTSP (TCP)"] and plain[0].api == cv2.CAP_FFMPEG


def test_opencv_gstreamer_probe_matches_build_info():
    info = cv2.getBuildInformation()
    assert gst.opencv_has_gstreamer() == ("GStreamer:                   YES" in info or
                                          any(line.split(":")[0].strip() == "GStreamer" and "NO" not in line
                                              for line in info.splitlines()))


# -- opening real sources -----------------------------------------------------------------------
def test_missing_camera_message(tmp_path):
    spec = SourceSpec("camera", "/dev/video97", index=97)
    with pytest.raises(SourceError, match=r"camera /dev/video97 does not exist .*--source"):
        CvGrabber(spec, capture_attempts(spec, gstreamer=False)).open()
    with pytest.raises(SourceError, match="does not exist"):
        open_source("/dev/video97")


def test_video_file_reads_every_frame_then_stops(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=12, size=(160, 120))
    with open_source(str(clip)) as src:
        frames = []
        while (frame := src.read(timeout=2.0)) is not None or not src.finished:
            if frame is not None:
                frames.append(frame)
        assert len(frames) == 12 and frames[0].image.shape == (120, 160, 3)
        assert src.finished and src.error is None and src.dropped == 0 and src.fps == pytest.approx(30, abs=0.5)


def test_image_folder_in_name_order(tmp_path):
    for i, value in enumerate((30, 10, 20)):
        cv2.imwrite(str(tmp_path / f"img{value}.png"), np.full((8, 8, 3), value, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    grabber = ImageGrabber(str(tmp_path))
    values = []
    while (image := grabber.read()) is not None:
        values.append(int(image[0, 0, 0]))
    assert values == [10, 20, 30]
    (tmp_path / "later").mkdir()  # subfolders too, as bench and quantize read a folder
    cv2.imwrite(str(tmp_path / "later" / "img05.png"), np.full((8, 8, 3), 5, np.uint8))
    grabber, values = ImageGrabber(str(tmp_path)), []
    while (image := grabber.read()) is not None:
        values.append(int(image[0, 0, 0]))
    assert values == [10, 20, 30, 5]
    (tmp_path / "later" / "img05.png").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageGrabber(str(empty))
    (tmp_path / "img15.jpg").write_bytes(b"not a jpeg")  # an unreadable image among readable ones is skipped
    jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 25, np.uint8))[1].tobytes()
    (tmp_path / "img25.jpg").write_bytes(jpeg[:len(jpeg) // 2])  # so is a truncated one, which OpenCV decodes grey
    grabber, values = ImageGrabber(str(tmp_path)), []
    while (image := grabber.read()) is not None:
        values.append(int(image[0, 0, 0]))
    assert values == [10, 20, 30]
    assert grabber.end_note == (f"skipped 2 of 5 images that cannot be used (first: {tmp_path / 'img15.jpg'}: not "
                                "an image OpenCV can decode)")
    assert grabber.skipped[1] == (tmp_path / "img25.jpg", "truncated JPEG (no end-of-image marker)")
    logs: list[str] = []  # the demo's source says so at the end (it ended with fewer frames without a word)
    with FrameSource(lambda: ImageGrabber(str(tmp_path)), live=False, log=logs.append) as src:
        while src.read(timeout=1.0) is not None or not src.finished:
            pass
    assert src.error is None and any("skipped 2 of 5 images that cannot be used" in line for line in logs), logs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    grabber = ImageGrabber(str(broken))
    with pytest.raises(SourceError, match=r"none of the 1 images could be read \(first: .*a.jpg\)"):
        grabber.read()


def test_synthetic_clip_pans_over_the_sample_photos():
    paths = sample_images()
    if not paths:
        pytest.skip("ultralytics is not installed: the synthetic clip uses its drawn fallback scene")
    assert {p.name for p in paths} == {"bus.jpg", "zidane.jpg"}
    camera = SyntheticCamera((320, 240), frames=5, realtime=False)
    frames = [camera.read() for _ in range(6)]
    assert frames[-1] is None and camera.ended
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames[:5])
    assert not np.array_equal(frames[0], frames[2])          # the view moves


def test_synthetic_source_is_paced_like_a_camera():
    with open_source("synthetic?frames=6&fps=50&width=160&height=120") as src:
        assert src.live
        frames = []
        while (frame := src.read(timeout=1.0)) is not None or not src.finished:
            if frame is not None:
                frames.append(frame)
        span = frames[-1].t_grabbed - frames[0].t_grabbed
        assert len(frames) + src.dropped == 6 and span >= 0.08      # 5 intervals of 20 ms


def test_an_image_list_runs_in_its_order(tmp_path):
    """A .txt list (as bench and quantize take it): its images in the list's order, paths relative to the list."""
    (tmp_path / "shots").mkdir()
    for value in (10, 20, 30):
        cv2.imwrite(str(tmp_path / "shots" / f"img{value}.png"), np.full((8, 8, 3), value, np.uint8))
    listed = tmp_path / "list.txt"
    listed.write_text("shots/img30.png\n\nshots/img10.png\n")
    spec = parse_source(str(listed))
    assert spec.kind == "images"
    grabber, values = ImageGrabber(spec.target), []
    while (image := grabber.read()) is not None:
        values.append(int(image[0, 0, 0]))
    assert values == [30, 10]
    empty = tmp_path / "none.txt"
    empty.write_text("\n")
    with pytest.raises(SourceError, match=r"no images .* found in .*none.txt"):
        ImageGrabber(str(empty))
