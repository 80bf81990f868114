"""The demo loop: newest frame -> detector -> overlay -> window / recording / JSON -> stats.

``run_demo`` takes a model path (loaded with ``detdistill.runtime.Detector``) or any detector
object with the same shape (``__call__(frame) -> detections``, ``names``, ``last_timings``),
which is the seam the tests use.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

import cv2
import numpy as np

from .capture import FrameSource
from .overlay import draw_detections, draw_hud, hud_lines
from .recorder import DetectionLog, VideoRecorder
from .sources import SourceSpec, open_source
from .stats import RunStats, Summary

QUIT_KEYS = {ord("q"), ord("Q"), 27}


class DetectorLike(Protocol):
    """What the loop needs from a detector (``detdistill.runtime.Detector`` fits)."""

    names: dict[int, str]
    last_timings: dict[str, float]

    def __call__(self, frame_bgr: np.ndarray) -> Any:
        """Return an object with ``boxes`` (N,4) xyxy, ``scores`` (N,), ``class_ids`` (N,)."""


def parse_classes(text: str | Sequence[int | str] | None) -> list[int | str] | None:
    """``"2,5"`` -> [2, 5]; ``"bus, car"`` -> ["bus", "car"]; empty -> None."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    out = [int(s) if isinstance(s, (int, np.integer)) or str(s).isdigit() else str(s) for s in items if str(s)]
    return out or None


def resolve_classes(classes: Sequence[int | str] | None, names: dict[int, str]) -> list[int] | None:
    """Class ids for ids or names (names are matched case-insensitively)."""
    if not classes:
        return None
    by_name = {v.lower(): k for k, v in names.items()}
    ids = []
    for c in classes:
        if isinstance(c, int):
            ids.append(c)
        elif c.lower() in by_name:
            ids.append(by_name[c.lower()])
        else:
            raise ValueError(f"unknown class {c!r}; this model knows: {', '.join(names.values())}")
    return ids


def load_detector(model: str | Path, conf: float, iou: float, classes: list[int] | None,
                  backend: str = "auto") -> DetectorLike:
    """Load ``model`` (``.onnx`` or ``.engine``) with ``detdistill.runtime``."""
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model {path} not found (export one with `detdistill export`, "
                                "build an engine on the device with `detdistill build`)")
    from detdistill.runtime import Detector

    return Detector(str(path), conf=conf, iou=iou, classes=classes, backend=backend)


def has_display() -> bool:
    """True when a window can be opened: a GUI-enabled OpenCV and (on Linux) an X/Wayland display."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), flags=re.MULTILINE)
    if match and match.group(1).upper() == "NONE":
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


@contextmanager
def _stop_on_signals(stop: threading.Event, log: Callable[[str], None]) -> Iterator[None]:
    """First Ctrl-C / SIGTERM asks the loop to stop after the current frame; a second Ctrl-C forces."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()   # no printing here: a signal can arrive in the middle of a print

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _arrays(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(result.boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
    class_ids = np.asarray(result.class_ids, dtype=np.int64).reshape(-1)
    return boxes, scores, class_ids


def run_demo(
    model: str | Path | DetectorLike,
    source: str | int | SourceSpec | FrameSource | None = None,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: str | Sequence[int | str] | None = None,
    max_fps: float = 0.0,
    show: bool | None = None,
    record: str | Path | None = None,
    save_json: str | Path | None = None,
    *,
    backend: str = "auto",
    max_frames: int = 0,
    stats_every_s: float = 5.0,
    window: str = "detdistill demo",
    log: Callable[[str], None] | None = None,
    on_frame: Callable[[int, np.ndarray, Any], None] | None = None,
    max_reconnects: int = 5,
    reconnect_delay_s: float = 1.0,
    stall_timeout_s: float = 5.0,
) -> Summary:
    """Run detection on ``source`` until it ends, the user quits (q/Esc, Ctrl-C) or ``max_frames``.

    Args:
        model: ``.onnx``/``.engine`` path, or a detector object (see ``DetectorLike``).
        source: see ``detdistill.demo.sources``; None = camera 0, else the synthetic clip.
        conf, iou: score and NMS IoU thresholds (only used when ``model`` is a path).
        classes: keep only these class ids or names (``"bus,car"``).
        max_fps: cap the loop rate (0 = as fast as possible).
        show: open a window (None = when a display exists). Headless runs print a stats line
            every ``stats_every_s`` seconds.
        record: write the annotated video here. save_json: detections per frame (JSON Lines).
        on_frame: called after each frame with (frame number, annotated image, detections).
    Returns:
        the run's ``Summary`` (also printed through ``log``).
    """
    log = log or (lambda message: print(message, flush=True))
    wanted = parse_classes(classes)
    if isinstance(model, (str, Path)):
        ids_only = wanted is not None and all(isinstance(c, int) for c in wanted)
        detector = load_detector(model, conf, iou, wanted if ids_only else None, backend)
        post_filter = None if ids_only else resolve_classes(wanted, detector.names)
    else:
        detector = model
        post_filter = resolve_classes(wanted, getattr(detector, "names", {}) or {})
    names = getattr(detector, "names", {}) or {}
    if show is None:
        show = has_display()
    elif show and not has_display():
        log("no display found (DISPLAY unset or OpenCV without GUI): running headless")
        show = False

    if isinstance(source, FrameSource):
        src = source if source.started else source.start()
    else:
        src = open_source(source, max_reconnects=max_reconnects, reconnect_delay_s=reconnect_delay_s,
                          stall_timeout_s=stall_timeout_s, log=log)
    log(f"source: {src.description}")

    record_fps = min(filter(None, [src.fps or 30.0, max_fps or None]))
    recorder = VideoRecorder(record, fps=record_fps) if record else None
    json_log = DetectionLog(save_json, names) if save_json else None
    stats = RunStats()
    stop = threading.Event()
    interrupted = False
    window_open = False
    frame_no = 0
    last_print = time.monotonic()
    period = 1.0 / max_fps if max_fps and max_fps > 0 else 0.0
    try:
        with _stop_on_signals(stop, log):
            stats.start()
            t_wait = time.monotonic()
            while not stop.is_set() and not (max_frames and frame_no >= max_frames):
                frame = src.read(timeout=0.1)
                if frame is None:
                    if src.finished:
                        break
                    if show:
                        cv2.waitKey(1)   # keep the window responsive while waiting
                    continue
                t_got = time.monotonic()
                result = detector(frame.image)
                boxes, scores, class_ids = _arrays(result)
                if post_filter is not None:
                    keep = np.isin(class_ids, post_filter)
                    boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
                t_det = time.monotonic()
                image = frame.image
                draw_detections(image, boxes, scores, class_ids, names)
                draw_hud(image, hud_lines(stats.fps(), stats.recent_latency_ms(), stats.recent_stage_ms(),
                                          src.dropped, len(scores)))
                t_draw = time.monotonic()
                if show:
                    if not window_open:   # 1:1 pixels, no Qt toolbar (WINDOW_NORMAL may never map under Xvfb)
                        cv2.namedWindow(window, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
                        window_open = True
                    cv2.imshow(window, image)
                    key = cv2.waitKey(1) & 0xFF
                    if key in QUIT_KEYS or cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                        stop.set()
                if recorder:
                    recorder.write(image)
                if json_log:
                    json_log.write(frame_no, frame.index, frame.t_grabbed - (stats.t_start or 0.0),
                                   image.shape, boxes, scores, class_ids)
                t_out = time.monotonic()
                timings = dict(getattr(detector, "last_timings", {}) or {})
                stages = {
                    "capture": (t_got - t_wait) * 1e3,
                    "preprocess": timings.get("preprocess", 0.0),
                    "inference": timings.get("inference", (t_det - t_got) * 1e3),
                    "postprocess": timings.get("postprocess", 0.0),
                    "draw": (t_draw - t_det) * 1e3,
                    "output": (t_out - t_draw) * 1e3,
                }
                stats.add((t_out - frame.t_grabbed) * 1e3, stages, now=t_out)
                if on_frame is not None:
                    on_frame(frame_no, image, result)
                frame_no += 1
                if not show and t_out - last_print >= stats_every_s:
                    log(stats.line(src.dropped))
                    last_print = t_out
                if period:
                    remaining = t_wait + period - time.monotonic()
                    if remaining > 0:
                        stop.wait(remaining)
                t_wait = time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        interrupted = interrupted or (stop.is_set() and not src.finished)
        src.close()
        if recorder:
            recorder.close()
        if json_log:
            json_log.close()
        if window_open:
            cv2.destroyWindow(window)
            cv2.waitKey(1)
    summary = stats.summary(dropped=src.dropped, reconnects=src.reconnects, interrupted=interrupted,
                            error=src.error)
    log(summary.format())
    if recorder:
        log(f"recording: {recorder.path} ({recorder.frames} frames)")
    if json_log:
        log(f"detections: {json_log.path} ({json_log.frames} frames)")
    return summary
