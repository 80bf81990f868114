"""Write the annotated frames to a video file or a network stream, and the detections to JSON Lines.

Every writer is closed by ``close()``, which the demo loop always reaches (Ctrl-C and SIGTERM
included): an MP4 is only playable once its index has been written at close (a GStreamer writer
sends end-of-stream there, which makes its muxer write the index).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

import cv2
import numpy as np

from .encoders import CODEC, StreamTarget, default_bitrate, describe, file_pipeline, stream_pipeline, video_suffix

CLOSE_TIMEOUT_S = 60.0  # the longest wait on an encoder: for room in its queue, or for close() to finalise the file
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class RecordingError(RuntimeError):
    """A video file or stream that cannot be opened or written (the message names the output)."""


def open_gstreamer_writer(pipeline: str, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An OpenCV writer feeding ``pipeline``'s ``appsrc`` with BGR frames (fourcc 0: raw video)."""
    return cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, fps, size, True)


def fit_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (width, height) with its aspect ratio kept, centred on black borders; the
    image itself when it already has that size."""
    width, height = size
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left, cv2.BORDER_CONSTANT,
                              value=(0, 0, 0))


class FrameWriter:
    """Encodes frames in a background thread through an OpenCV ``VideoWriter``.

    A bounded queue: ``write`` blocks only when the encoder falls ``queue_size`` frames behind, so
    no frame is ever lost (an encoder that takes nothing for ``CLOSE_TIMEOUT_S`` is an error). The writer opens on the first frame: its size fixes the video size, later
    frames of another size (a camera reconnect, a folder of photos of mixed sizes) are letterboxed into it,
    their aspect ratio kept (see :func:`fit_into`). ``write`` must not be
    given an array that the caller modifies afterwards. ``encoder`` is ``opencv`` or a GStreamer
    encoder (see ``detdistill.demo.encoders``); when it does not open, ``fallback`` is used instead
    (logged) where there is one.
    """

    kind = "video"
    thread_name = "recorder"

    def __init__(self, label: str, fps: float = 30.0, queue_size: int = 32, *, encoder: str = "opencv",
                 fallback: str | None = None, bitrate: int = 0, log: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.encoder = encoder
        self.fallback = fallback
        self.bitrate = bitrate
        self.log = log or (lambda message: None)
        self.pipeline: str | None = None      # the GStreamer pipeline that opened, if any
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._abandoned = False  # close() gave up on the encoder: once it returns, it stops at the next frame

    # -- what a subclass provides --------------------------------------------------------------
    def _pipeline(self, encoder: str, width: int, height: int) -> str:
        raise NotImplementedError

    def _opencv_writer(self) -> cv2.VideoWriter:
        raise RecordingError(f"{self.label}: OpenCV's writer only writes files")

    # -- opening -------------------------------------------------------------------------------
    def _open_with(self, encoder: str) -> cv2.VideoWriter:
        if encoder == "opencv":
            return self._opencv_writer()
        assert self.size is not None
        pipeline = self._pipeline(encoder, *self.size)
        writer = open_gstreamer_writer(pipeline, self.fps, self.size)
        if not writer.isOpened():
            raise RecordingError(f"GStreamer could not start the {encoder} pipeline for {self.label} (run it with "
                                 f"gst-launch-1.0 to see why, videotestsrc in place of appsrc): {pipeline}")
        self.pipeline = pipeline
        return writer

    def _open(self, image: np.ndarray) -> cv2.VideoWriter:
        # encoders refuse a frame 1 pixel wide or high (an odd image of a folder): the video is then 2 pixels there
        self.size = (max(image.shape[1], 2), max(image.shape[0], 2))
        try:
            return self._open_with(self.encoder)
        except RuntimeError as exc:
            if self.fallback is None:
                raise
            self.log(f"{self.label}: {self.encoder} did not open ({exc}); using {describe(self.fallback)} instead")
            self.encoder, self.fallback = self.fallback, None
            return self._open_with(self.encoder)

    def describe(self) -> str:
        """The encoder and its bitrate (the default one once the frame size is known)."""
        if self.encoder in CODEC and self.size is not None:
            return describe(self.encoder, self.bitrate or default_bitrate(*self.size, self.fps))
        return describe(self.encoder, self.bitrate if self.encoder in CODEC else None)

    # -- encoding thread -----------------------------------------------------------------------
    def _encode(self, writer: cv2.VideoWriter) -> None:
        try:
            # after an error the queue is still drained (frames dropped), so that write() and close() never
            # wait on a full queue that nothing empties
            while not self._abandoned and (image := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        image = fit_into(image, self.size)
                        writer.write(image)
                    except Exception as exc:  # reported by the next write() or close()
                        self._error = exc
        finally:
            try:
                writer.release()     # writes the MP4 index / sends end-of-stream
            except Exception as exc:
                self._error = self._error or exc

    def write(self, image: np.ndarray) -> None:
        """Queue one BGR frame for encoding."""
        if self._error is not None:
            raise RecordingError(f"{self.kind} {self.label} failed: {self._error}")
        if self._thread is None:
            writer = self._open(image)
            self._thread = threading.Thread(target=self._encode, args=(writer,), name=self.thread_name, daemon=True)
            self._thread.start()
        try:  # waits while the encoder is behind (no frame is lost), but not for an encoder that is stuck
            self._queue.put(image, timeout=CLOSE_TIMEOUT_S)
        except queue.Full:
            self._error = self._error or self._stuck("take a frame", CLOSE_TIMEOUT_S)
            raise RecordingError(f"{self.kind} {self.label} failed: {self._error}") from None
        self.frames += 1

    def _stuck(self, what: str, timeout_s: float) -> TimeoutError:
        return TimeoutError(f"the encoder did not {what} within {timeout_s:g} s ({self._queue.qsize()} frames queued; "
                            "a stuck GStreamer pipeline?): the output may be incomplete")

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Encode what is queued and finalise the output (idempotent); a :class:`RecordingError` when encoding
        failed, or did not finish within ``timeout_s`` (the encoder thread is a daemon: it does not keep the
        process alive)."""
        if self._thread is not None:
            thread, self._thread = self._thread, None
            deadline = time.monotonic() + timeout_s
            try:
                self._queue.put(None, timeout=timeout_s)  # one deadline for handing over the end and for the join
                thread.join(max(0.0, deadline - time.monotonic()))
            except queue.Full:
                pass
            if thread.is_alive():
                self._abandoned = True
                self._error = self._error or self._stuck("finish", timeout_s)
        if self._error is not None:
            raise RecordingError(f"{self.kind} {self.label} failed: {self._error}")


class VideoRecorder(FrameWriter):
    """Annotated frames to ``path``.

    ``encoder="opencv"``: OpenCV's writer (``.mp4``/``.mov``/``.mkv``: MPEG-4, ``.avi``: MJPEG);
    a GStreamer encoder: H.264/H.265 in the container of the suffix (``mp4mux``, ``qtmux``,
    ``matroskamux``, ``avimux``).
    """

    kind = "recording"

    def __init__(self, path: str | Path, fps: float = 30.0, queue_size: int = 32, *, encoder: str = "opencv",
                 fallback: str | None = None, bitrate: int = 0, log: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.codec = FOURCC_BY_SUFFIX[video_suffix(self.path)]
        super().__init__(str(self.path), fps, queue_size, encoder=encoder, fallback=fallback, bitrate=bitrate,
                         log=log)

    def _open(self, image: np.ndarray) -> cv2.VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return super()._open(image)

    def _opencv_writer(self) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*self.codec), self.fps, self.size)
        if not writer.isOpened():
            raise RecordingError(f"OpenCV cannot open {self.path} for writing (codec {self.codec}, frames of "
                                 f"{self.size[0]}x{self.size[1]}): check that its folder can be written, or record "
                                 "to .avi (MJPEG)")
        return writer

    def _pipeline(self, encoder: str, width: int, height: int) -> str:
        return file_pipeline(self.path, encoder, width, height, self.fps, self.bitrate)

    def describe(self) -> str:
        return f"opencv ({self.codec}, software)" if self.encoder == "opencv" else super().describe()


class VideoStreamer(FrameWriter):
    """Annotated frames to the network: RTP over UDP, or pushed to an RTSP server (GStreamer only)."""

    kind = "stream"
    thread_name = "recorder-stream"

    def __init__(self, target: StreamTarget, fps: float = 30.0, queue_size: int = 32, *,
                 encoder: str = "nvv4l2h264enc", fallback: str | None = None, bitrate: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        self.target = target
        super().__init__(target.url, fps, queue_size, encoder=encoder, fallback=fallback, bitrate=bitrate, log=log)

    def _pipeline(self, encoder: str, width: int, height: int) -> str:
        return stream_pipeline(self.target, encoder, width, height, self.fps, self.bitrate)


JSON_SUFFIX = ".jsonl"  # what --save-json writes (and may overwrite): JSON Lines, readable while the demo runs


class DetectionLog:
    """One JSON object per processed frame, one per line, flushed as it goes.

    ``{"frame": 0, "source_index": 0, "time_s": 0.03, "width": 640, "height": 480,
    "detections": [{"class_id": 5, "name": "bus", "score": 0.87, "box": [x1, y1, x2, y2]}],
    "source": 0, "image": "photos/a.jpg"}`` (box in frame pixels; ``frame`` counts the frames of that
    ``source``, the number of the ``--source`` it came from, which is only there when the caller passes
    it; ``image`` is the file a frame of an image folder was read from, only there for such frames:
    unreadable images are skipped, so frame numbers alone do not say which file a record is).
    """

    def __init__(self, path: str | Path, names: dict[int, str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.names = names or {}
        self.frames = 0
        self._file: TextIO | None = None  # opened (and an earlier run's file replaced) at the first frame
        self._closed = False

    def write(self, frame: int, source_index: int, time_s: float, shape: tuple[int, ...],
              boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, source: int | None = None,
              image: str | None = None) -> None:
        detections = [
            {"class_id": int(c), "name": self.names.get(int(c), str(int(c))), "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for b, s, c in zip(np.asarray(boxes), np.asarray(scores), np.asarray(class_ids))
        ]
        record = {"frame": frame, "source_index": source_index, "time_s": round(time_s, 4),
                  "width": int(shape[1]), "height": int(shape[0]), "detections": detections}
        if source is not None:
            record["source"] = source
        if image is not None:
            record["image"] = image
        if self._closed:
            return
        if self._file is None:  # a run that fails before its first frame leaves an earlier run's file as it was
            self._file = self.path.open("w", encoding="utf-8")
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.frames += 1

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None
