"""Parse a ``--source`` string and open it as a threaded ``FrameSource``.

Accepted sources (options after ``?``, or after ``#`` for URLs):

* ``0``, ``/dev/video0`` -- USB/V4L2 camera. ``?width=1280&height=720&fps=30&format=mjpeg|raw``.
  MJPEG is decoded by Jetson hardware (``nvv4l2decoder mjpd=1``, else ``nvjpegdec``) when
  OpenCV has GStreamer and the element exists, else in software through V4L2.
* ``csi://0`` -- Jetson CSI camera via ``nvarguscamerasrc`` (needs OpenCV with GStreamer).
  ``?width=&height=&fps=&mode=<sensor-mode>&flip=<0-7>``.
* ``rtsp://host/stream`` -- ``#codec=h264|h265&latency=200``; ``http(s)://`` -- via FFmpeg.
* ``video.mp4`` -- a video file (every frame processed; the end of the file ends the demo).
* ``images/``, ``list.txt`` or ``photo.jpg`` -- an image folder (sorted), a list of images (one path per line)
  or a single image.
* ``synthetic`` -- the generated camera-like clip (``?frames=&fps=&width=&height=``); only this exact name
  (``synthetic_drive.mp4`` is a video file).
* nothing -- camera 0 if one is plugged in, else the synthetic clip.

Options are checked (``detdistill.demo.source_options``). A camera index or ``synthetic`` that is also the name of a
file or folder here is refused as ambiguous (``./NAME`` is the path).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

import cv2
import numpy as np

from ..data.images import IMG_SUFFIXES
from . import gstreamer as gst
from .capture import FrameSource, Grabber, SourceError
from .image_source import LIST_SUFFIX, ImageGrabber
from .source_options import check_options
from .synthetic import SyntheticCamera, sample_images


LIVE_KINDS = {"camera", "csi", "rtsp", "stream", "synthetic"}


@dataclass
class SourceSpec:
    """What ``--source`` names: ``kind`` and ``target`` plus capture options."""

    kind: str                       # auto|camera|csi|rtsp|stream|file|images|synthetic
    target: str = ""                # device path, URL, file or folder
    index: int | None = None        # camera index or CSI sensor id
    width: int = 1280
    height: int = 720
    fps: int = 30
    options: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Live sources drop stale frames; finite ones are read completely."""
        return self.kind in LIVE_KINDS


def _split_options(text: str, sep: str) -> tuple[str, dict[str, str]]:
    if sep in text:
        head, _, tail = text.partition(sep)
        return head, dict(parse_qsl(tail, keep_blank_values=True))
    return text, {}


def _checked(spec: SourceSpec, text: str, sep: str = "?") -> SourceSpec:
    """``spec`` with its options checked (:func:`check_options`); width, height and fps move onto it."""
    values = check_options(spec.kind, spec.options, text, sep)
    for key in ("width", "height", "fps"):
        if key in values:
            setattr(spec, key, values.pop(key))
    spec.options = {key: str(value) for key, value in values.items()}
    return spec


def synthetic_spec(options: dict[str, str] | None = None) -> SourceSpec:
    """The generated clip, by default 640x480 at 30 fps, 300 frames (``options`` unchecked)."""
    return SourceSpec("synthetic", "synthetic", width=640, height=480, options=dict(options or {}))


def _refuse_shadowed(text: str, meaning: str, other: str) -> None:
    """Refuse ``text`` (a camera index or ``synthetic``) when a file or folder of that name is here too."""
    path = Path(text)
    if path.exists():
        what = "folder" if path.is_dir() else "file"
        raise SourceError(f"source {text!r} is ambiguous: it means {meaning}, but there is a {what} {text} here; "
                          f"pass ./{text} for the {what}, or {other}")


def parse_source(source: str | int | None) -> SourceSpec:
    """Turn a ``--source`` value into a ``SourceSpec`` (no device is touched)."""
    if isinstance(source, str) and not source.strip():
        raise SourceError("the source is empty (''): pass a camera index, /dev/videoN, csi://N, a URL, a video "
                          "file or an image folder, or leave --source out for camera 0 (else the synthetic clip)")
    if source is None or (isinstance(source, str) and source.strip() == "auto"):
        return SourceSpec("auto")
    if isinstance(source, int):
        return SourceSpec("camera", f"/dev/video{source}", index=source)
    text = source.strip()
    lowered = text.lower()
    if lowered.startswith(("rtsp://", "rtsps://")):
        url, options = _split_options(text, "#")
        return _checked(SourceSpec("rtsp", url, options=options), text, "#")
    if lowered.startswith(("http://", "https://")):
        url, options = _split_options(text, "#")
        return SourceSpec("stream", url, options=options)
    if lowered.startswith("csi://"):
        body, options = _split_options(text[len("csi://"):], "?")
        if not body.isdigit():
            raise SourceError(f"bad CSI source {text!r}: use csi://<sensor-id>, e.g. csi://0")
        return _checked(SourceSpec("csi", text.split("?")[0], index=int(body), options=options), text)
    body, options = _split_options(text, "?")
    if body.lower() == "synthetic":
        _refuse_shadowed(text, "the generated synthetic clip", "synthetic?frames=300 for the clip")
        return _checked(synthetic_spec(options), text)
    if body.isdigit():
        index = int(body)
        _refuse_shadowed(text, f"camera {index} (/dev/video{index})", f"/dev/video{index} for the camera")
        return _checked(SourceSpec("camera", f"/dev/video{index}", index=index, options=options), text)
    if body.startswith("/dev/"):
        match = re.fullmatch(r"/dev/video(\d+)", body)
        index = int(match.group(1)) if match else None
        return _checked(SourceSpec("camera", body, index=index, options=options), text)
    path = Path(text).expanduser()
    if path.is_dir():
        return SourceSpec("images", str(path))
    if path.is_file():
        if path.stat().st_size == 0:
            raise SourceError(f"source {text!r} is empty (0 bytes: a copy or recording that did not finish?): pass "
                              "a video file, image or image folder with content")
        kind = "images" if path.suffix.lower() in (*IMG_SUFFIXES, LIST_SUFFIX) else "file"
        return SourceSpec(kind, str(path))
    if path.suffix or len(path.parts) > 1 or text.endswith(("/", "\\")):  # meant as a file or folder
        where = "" if path.parent.is_dir() else f" (nor does its folder {path.parent})"
        raise SourceError(f"source {text!r} does not exist{where}: check the path of the video file, image or "
                          "image folder")
    raise SourceError(
        f"source {text!r} is not a camera index, /dev/videoN, csi://N, rtsp:// or http:// URL, "
        "existing video file or image folder, or synthetic"
    )


@dataclass(frozen=True)
class Attempt:
    """One way to open a source with OpenCV: target, backend, properties to set after open."""

    label: str
    target: str | int
    api: int = cv2.CAP_ANY
    props: tuple[tuple[int, float], ...] = ()


def capture_attempts(
    spec: SourceSpec,
    *,
    gstreamer: bool | None = None,
    has_element: Callable[[str], bool] | None = None,
) -> list[Attempt]:
    """Ordered ways to open ``spec``, best first (hardware decode, then software)."""
    gstreamer = gst.opencv_has_gstreamer() if gstreamer is None else gstreamer
    has_element = has_element or gst.gst_has_element
    w, h, fps = spec.width, spec.height, spec.fps
    if spec.kind == "camera":
        return _camera_attempts(spec, gstreamer, has_element)
    if spec.kind == "csi":
        if not gstreamer:
            raise SourceError(
                f"{spec.target} needs OpenCV built with GStreamer, and this OpenCV has none. "
                "On a Jetson use JetPack's OpenCV (apt python3-opencv / nvidia-opencv) in a venv "
                "made with --system-site-packages and uninstall pip's opencv-python "
                "(see deploy/jetson/README.md, 'Missing GStreamer')."
            )
        mode = spec.options.get("mode")
        pipeline = gst.csi_pipeline(
            spec.index or 0, w, h, fps,
            sensor_mode=int(mode) if mode else None, flip=int(spec.options.get("flip", 0)),
        )
        return [Attempt(f"GStreamer nvarguscamerasrc sensor-id={spec.index}", pipeline, cv2.CAP_GSTREAMER)]
    if spec.kind == "rtsp":
        codec = spec.options.get("codec", "h264")
        latency = int(spec.options.get("latency", 200))
        attempts = []
        if gstreamer:
            if has_element("nvv4l2decoder"):
                attempts.append(Attempt(f"GStreamer RTSP {codec} nvv4l2decoder",
                                        gst.rtsp_pipeline(spec.target, codec, latency, True), cv2.CAP_GSTREAMER))
            if has_element(f"avdec_{codec}"):
                attempts.append(Attempt(f"GStreamer RTSP {codec} avdec",
                                        gst.rtsp_pipeline(spec.target, codec, latency, False), cv2.CAP_GSTREAMER))
        attempts.append(Attempt("FFmpeg RTSP (TCP)", spec.target, cv2.CAP_FFMPEG,
                                ((cv2.CAP_PROP_BUFFERSIZE, 1),)))
        return attempts
    if spec.kind == "stream":
        return [Attempt("FFmpeg stream", spec.target, cv2.CAP_FFMPEG, ((cv2.CAP_PROP_BUFFERSIZE, 1),))]
    if spec.kind == "file":
        return [Attempt(f"video file {Path(spec.target).name}", spec.target, cv2.CAP_ANY)]
    raise SourceError(f"no OpenCV capture for source kind {spec.kind!r}")


def _camera_attempts(spec: SourceSpec, gstreamer: bool, has_element: Callable[[str], bool]) -> list[Attempt]:
    w, h, fps = spec.width, spec.height, spec.fps
    mjpeg = spec.options.get("format", "mjpeg").lower() in ("mjpeg", "mjpg", "jpeg")
    attempts: list[Attempt] = []
    if gstreamer and mjpeg:
        for decoder in ("nvv4l2decoder", "nvjpegdec"):
            if has_element(decoder):
                attempts.append(Attempt(f"GStreamer MJPEG {decoder} (hardware)",
                                        gst.usb_mjpeg_pipeline(spec.target, w, h, fps, decoder),
                                        cv2.CAP_GSTREAMER))
                break
    linux = sys.platform.startswith("linux")
    target: str | int = spec.target if linux or spec.index is None else spec.index
    api = cv2.CAP_V4L2 if linux else cv2.CAP_ANY
    base = ((cv2.CAP_PROP_FRAME_WIDTH, w), (cv2.CAP_PROP_FRAME_HEIGHT, h),
            (cv2.CAP_PROP_FPS, fps), (cv2.CAP_PROP_BUFFERSIZE, 1))
    if mjpeg:
        fourcc = float(cv2.VideoWriter.fourcc(*"MJPG"))
        attempts.append(Attempt("V4L2 MJPEG (software decode)", target, api,
                                ((cv2.CAP_PROP_FOURCC, fourcc),) + base))
    attempts.append(Attempt("V4L2 native format", target, api, base))
    return attempts


class CvGrabber:
    """A ``cv2.VideoCapture`` opened through the first ``Attempt`` that works."""

    def __init__(self, spec: SourceSpec, attempts: list[Attempt]) -> None:
        self.spec = spec
        self.attempts = attempts
        self.cap: cv2.VideoCapture | None = None
        self.description = spec.target
        self.fps: float | None = None

    def open(self) -> "CvGrabber":
        if self.spec.kind == "camera" and self.spec.target.startswith("/dev/"):
            _check_device(self.spec.target)
        if self.spec.kind == "rtsp":
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        tried = []
        for attempt in self.attempts:
            cap = cv2.VideoCapture(attempt.target, attempt.api)
            if not cap.isOpened():
                cap.release()
                tried.append(attempt.label)
                continue
            for prop, value in attempt.props:
                cap.set(prop, value)
            self.cap = cap
            self.description = f"{self.spec.target} [{attempt.label}]"
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and 0 < fps < 1000 else None
            return self
        raise SourceError(_open_failure_hint(self.spec, tried))

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read() if self.cap is not None else (False, None)
        return frame if ok and frame is not None else None

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def _check_device(path: str) -> None:
    if not os.path.exists(path):
        found = sorted(str(p) for p in Path("/dev").glob("video*"))
        listing = ", ".join(found) if found else "none"
        raise SourceError(
            f"camera {path} does not exist (video devices here: {listing}). Plug a camera in, "
            "pass --source /dev/videoN or csi://N, or leave --source out to run the synthetic clip."
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise SourceError(f"no permission to open {path}: add your user to the 'video' group "
                          "(sudo usermod -aG video $USER, then log in again)")


def _open_failure_hint(spec: SourceSpec, tried: list[str]) -> str:
    head = f"cannot open {spec.target} (tried: {'; '.join(tried) or 'nothing'})."
    hints = {
        "camera": " Is another program using the camera? Check `v4l2-ctl --list-formats-ext -d "
                  f"{spec.target}` for a supported width/height/fps, or try ?format=raw.",
        "csi": " Check the ribbon cable, `ls /dev/video*`, and restart the Argus daemon: "
               "sudo systemctl restart nvargus-daemon.",
        "rtsp": " Check the URL, credentials and that the stream is H.264/H.265 (#codec=h265).",
        "stream": " Check the URL.",
        "file": " Is it a video OpenCV's FFmpeg can decode?",
    }
    return head + hints.get(spec.kind, "")


def grabber_factory(spec: SourceSpec, *, realtime: bool = True) -> Callable[[], Grabber]:
    """A function that opens ``spec`` afresh (used for the first open and for reconnects)."""
    if spec.kind == "images":
        return lambda: ImageGrabber(spec.target)
    if spec.kind == "synthetic":
        frames = int(spec.options.get("frames", 300))
        return lambda: SyntheticCamera((spec.width, spec.height), fps=spec.fps, frames=frames, realtime=realtime)
    attempts = capture_attempts(spec)
    return lambda: CvGrabber(spec, attempts).open()


def at_frame_size(source: str | int | SourceSpec | None, frame_hw: tuple[int, int]) -> str | int | SourceSpec | None:
    """Ask a camera, CSI sensor or the synthetic clip for ``(h, w)`` frames (a model with its letterbox in the graph
    takes one size), unless the source names its own width or height; other sources are returned as they are."""
    if isinstance(source, str) and re.search(r"[?&#](width|height)=", source):
        return source
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    if spec.kind not in ("auto", "camera", "csi", "synthetic"):
        return source
    spec.height, spec.width = frame_hw
    spec.options["fit"] = "1"  # for auto: the camera or clip it resolves to gets the size too
    return spec


def open_source(
    source: str | int | SourceSpec | None,
    *,
    max_reconnects: int = 5,
    reconnect_delay_s: float = 1.0,
    stall_timeout_s: float = 5.0,
    log: Callable[[str], None] | None = None,
) -> FrameSource:
    """Open ``source`` and start its capture thread.

    With no source: camera 0 if ``/dev/video0`` opens, else the synthetic clip. Raises
    ``SourceError`` with a hint when the source cannot be opened.
    """
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    log = log or (lambda message: None)
    if spec.kind == "auto":
        size = {"width": spec.width, "height": spec.height} if spec.options.get("fit") else {}
        if sys.platform.startswith("linux") and os.path.exists("/dev/video0"):
            try:
                return open_source(SourceSpec("camera", "/dev/video0", index=0, **size),
                                   max_reconnects=max_reconnects, reconnect_delay_s=reconnect_delay_s,
                                   stall_timeout_s=stall_timeout_s, log=log)
            except SourceError as exc:
                log(f"camera 0 unusable ({exc}); using the synthetic clip")
        else:
            log("no camera and no --source: using the synthetic clip")
        spec = synthetic_spec()  # not parse_source: a folder named synthetic here must not stop the fallback
        if size:
            spec.width, spec.height = size["width"], size["height"]
    if spec.kind == "synthetic" and not sample_images():
        log("synthetic clip: a drawn scene, in which a COCO model finds nothing (the sample photos it pans over come "
            "with ultralytics, not installed here); pass --source a video, an image folder or a camera to see "
            "detections")
    source_obj = FrameSource(
        grabber_factory(spec),
        live=spec.live,
        name=spec.target or spec.kind,
        max_reconnects=max_reconnects,
        reconnect_delay_s=reconnect_delay_s,
        stall_timeout_s=stall_timeout_s,
        log=log,
    )
    return source_obj.start()
