"""The demo loop: newest frames -> detector -> overlay -> window / recording / JSON -> stats.

Two loops share the sources and the output stage:

* pipelined (default): capture + preprocess, inference and postprocess run in their own threads
  (``detdistill.demo.pipeline``), overlapping, while this thread draws and writes; frames of
  several sources are batched into one engine call when the model's batch axis is dynamic;
* serial (``sync=True``, ``--sync``): one frame after another on this thread, for debugging.

``run_demo`` takes a model path (loaded with ``detdistill.runtime.Detector``) or any detector
object with the same shape (``__call__(frame) -> detections``, ``names``, ``last_timings``),
which is the seam the tests use. A ``detdistill.runtime.Detector`` (any backend) is split into
its stages; another object runs whole in the inference stage.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol, Union

import cv2
import numpy as np

from ..atomic import check_writable
from ..runtime import Detector
from ..runtime.backends import describe_backend
from ..runtime.detector import class_ids_of
from ..file_checks import require_present
from .capture import FrameSource, SourceError
from .display import display_problem
from .encoders import plan_video
from .gather import SourceSet
from .output import Outputs, recording_paths
from .pipeline import Pipeline
from .recorder import JSON_SUFFIX
from .sources import SourceSpec, at_frame_size, open_source, parse_source
from .stages import stages_for
from .stats import Summary

SourceArg = Union[str, Path, int, SourceSpec, FrameSource, None]
DRAIN_S = 5.0   # after a stop, how long in-flight frames may take to come out


class DetectorLike(Protocol):
    """What the loop needs from a detector (``detdistill.runtime.Detector`` fits)."""

    names: dict[int, str]
    last_timings: dict[str, float]

    def __call__(self, frame_bgr: np.ndarray) -> Any:
        """Return an object with ``boxes`` (N,4) xyxy, ``scores`` (N,), ``class_ids`` (N,)."""


def parse_classes(text: str | Sequence[int | str] | None) -> list[int | str] | None:
    """``"2,5"`` -> [2, 5]; ``"bus, car"`` -> ["bus", "car"]; None or an empty list -> None (every class);
    ValueError when the text is empty or holds only separators (``","``): an unset shell variable must not turn
    the filter off."""
    if text is None or (not isinstance(text, str) and not len(text)):
        return None
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    out = [int(s) if isinstance(s, (int, np.integer)) or str(s).isdigit() else str(s) for s in items if str(s)]
    if not out:
        raise ValueError(f"--classes {text!r} names no class: give ids or names, e.g. 'bus,car' or '2,5', or leave "
                         "it out to keep every class")
    return out


def resolve_classes(classes: Sequence[int | str] | None, names: dict[int, str]) -> list[int] | None:
    """Class ids for ids or names (names are matched case-insensitively)."""
    if not classes:
        return None
    ids = class_ids_of(classes, names)
    if None in ids:
        known = f"ids {min(names)}-{max(names)} ({', '.join(names.values())})" if names else "no class names"
        raise ValueError(f"unknown class {classes[ids.index(None)]!r}; this model knows {known}: pass --classes names "
                         "or ids from these")
    return ids


def load_detector(model: str | Path, conf: float, iou: float, classes: list[int] | None,
                  backend: str = "auto") -> DetectorLike:
    """Load ``model`` (``.onnx`` or ``.engine``) with ``detdistill.runtime``."""
    path = Path(model)
    require_present(path, "model", "Export one with `detdistill export`, or build an engine on the device with "
                    "`detdistill build`.")
    return Detector(str(path), conf=conf, iou=iou, classes=classes, backend=backend)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
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


def open_sources(sources: Sequence[SourceArg], log: Callable[[str], None], **options: Any) -> list[FrameSource]:
    """Open every source (already opened ``FrameSource`` objects are started if needed).

    A source that cannot be opened closes the ones already open and raises ``SourceError``
    naming it.
    """
    opened: list[FrameSource] = []
    try:
        for i, source in enumerate(sources):
            if isinstance(source, FrameSource):
                opened.append(source if source.started else source.start())
                continue
            try:
                opened.append(open_source(source, log=log, **options))
            except SourceError as exc:
                if len(sources) == 1:
                    raise
                raise SourceError(f"source {i} ({source}): {exc}") from None
    except BaseException:
        for src in opened:
            src.close()
        raise
    return opened


def _serial_loop(detector: DetectorLike, sources: SourceSet, outputs: Outputs, stop: threading.Event,
                 max_fps: float) -> None:
    """Today's loop, kept for debugging: read, detect, draw, write, one frame after another."""
    period = 1.0 / max_fps if max_fps and max_fps > 0 else 0.0
    t_wait = time.monotonic()
    while not stop.is_set() and not sources.finished:
        frames = sources.read(timeout=0.1)
        if not frames:
            outputs.idle()
            continue
        t_got = time.monotonic()
        for number, (i, frame) in enumerate(frames):
            t0 = time.monotonic()
            result = detector(frame.image)
            spent = (time.monotonic() - t0) * 1e3
            timings = dict(getattr(detector, "last_timings", {}) or {})
            stage_ms = {
                "capture": (t_got - t_wait) * 1e3 if number == 0 else 0.0,
                "preprocess": timings.get("preprocess", 0.0),
                "inference": timings.get("inference", spent),
                "postprocess": timings.get("postprocess", 0.0),
            }
            outputs.emit([(i, frame)], [result], stage_ms)
        if period:
            remaining = t_wait + period - time.monotonic()
            if remaining > 0:
                stop.wait(remaining)
        t_wait = time.monotonic()


def _pipelined_loop(pipeline: Pipeline, outputs: Outputs, stop: threading.Event,
                    log: Callable[[str], None]) -> None:
    """Draw and write what the pipeline finishes until it is drained (or ``DRAIN_S`` after a stop)."""
    stopped_at = None
    while True:
        job = pipeline.get(timeout=0.05)
        if job is not None:
            outputs.emit(job.frames, job.results, job.stage_ms)
        elif pipeline.finished:
            return
        else:
            outputs.idle()
        if stop.is_set():
            stopped_at = stopped_at or time.monotonic()
            if time.monotonic() - stopped_at > DRAIN_S:
                log(f"the pipeline did not drain within {DRAIN_S:.0f} s of the stop: frames still in it are dropped")
                return


def start_stamped(path: str | Path | None) -> Path | None:
    """``path`` with its strftime codes (e.g. ``run-%Y%m%d-%H%M%S.mp4``) set to the run's start, local time: each run
    of a service that restarts writes its own files instead of replacing the last run's."""
    if path is None or "%" not in str(path):
        return None if path is None else Path(path)
    try:
        return Path(time.strftime(str(path)))
    except ValueError as e:  # a lone or unknown % code on some platforms
        raise ValueError(f"{path}: its % codes are not a valid strftime pattern ({e}); use codes such as "
                         "%Y%m%d-%H%M%S, or %% for a literal %") from e


def _refuse_folders(record: str | Path | None, save_json: str | Path | None) -> None:
    """Raise ValueError when ``--record`` or ``--save-json`` names an existing folder."""
    for path, option in ((record, "--record"), (save_json, "--save-json")):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"{option} {path} is a folder: pass a file path in it, such as "
                             f"{Path(path) / ('out.mp4' if option == '--record' else 'dets' + JSON_SUFFIX)}")


def _check_output_files(record: str | Path | None, save_json: str | Path | None, specs: list) -> None:
    """Raise ValueError when ``save_json`` is not a JSON path, or a file the run writes (``--record``, one per
    source, or ``--save-json``) is one of its source files (it would be overwritten while it is read);
    PermissionError when its folder cannot be written or lies under a file. Checked before the model loads, after
    the recording's encoder was chosen (this check creates the output folders)."""
    if save_json is not None and Path(save_json).suffix.lower() != JSON_SUFFIX:
        raise ValueError(f"--save-json {save_json} should end in {JSON_SUFFIX}: detections are written as JSON Lines "
                         "(one JSON object per frame per line, readable while the demo runs), and the file is "
                         "overwritten, so it must not name another kind of file")
    inputs = {Path(s).resolve() for s in specs if isinstance(s, (str, Path)) and Path(s).is_file()}
    outputs = [(out, "--record") for out in (recording_paths(record, max(len(specs), 1)) if record else [])]
    for out, option in [*outputs, *([(Path(save_json), "--save-json")] if save_json else [])]:
        if out.resolve() in inputs:
            raise ValueError(f"{out} is one of the demo's sources: writing the run's output there would overwrite "
                             "it; choose another output path")
        check_writable(out, option)  # also refuses a path under a file (clip.mp4/out.mp4)


def run_demo(
    model: str | Path | DetectorLike,
    source: SourceArg | Sequence[SourceArg] = None,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: str | Sequence[int | str] | None = None,
    max_fps: float = 0.0,
    show: bool | None = None,
    record: str | Path | None = None,
    save_json: str | Path | None = None,
    *,
    sync: bool = False,
    backend: str = "auto",
    encoder: str = "auto",
    bitrate: float = 0.0,
    stream: str | None = None,
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
        source: see ``detdistill.demo.sources``; None = camera 0, else the synthetic clip. A list
            runs several sources through the one model (batched when its batch axis is dynamic),
            each with its own stats, window and recording; one that fails leaves the others running.
        conf, iou: score and NMS IoU thresholds (only used when ``model`` is a path).
        classes: keep only these class ids or names (``"bus,car"``).
        max_fps: cap the loop rate (0 = as fast as possible).
        show: open a window (None = when a display exists). Headless runs print a stats line
            every ``stats_every_s`` seconds.
        record: write the annotated video here (several sources: ``<stem>-<n><suffix>`` each).
        save_json: detections per frame (JSON Lines), written from the first frame on.
            ``record`` and ``save_json`` may hold strftime codes (``%Y%m%d-%H%M%S``): the run's start time.
        encoder: ``auto``, ``nvv4l2h264enc``, ``nvv4l2h265enc``, ``x264enc`` or ``opencv`` (see
            ``detdistill.demo.encoders``); one that cannot run raises ``EncoderError`` before the run.
        bitrate: Mbit/s of a GStreamer encoder (0 = from the frame size).
        stream: ``udp://HOST:PORT`` (RTP) or ``rtsp://SERVER:PORT/PATH`` (pushed to an RTSP server);
            several sources use PORT, PORT+1, ... (PATH-0, PATH-1, ...).
        sync: the serial loop (one thread, one frame after another) instead of the pipelined one.
        max_frames: stop each source after this many frames (0 = no limit).
        on_frame: called after each frame with (frame number, annotated image, detections).
    Returns:
        the run's ``Summary`` (also printed through ``log``).
    """
    log = log or (lambda message: print(message, flush=True))
    specs = [str(s) if isinstance(s, Path) else s for s in (source if isinstance(source, (list, tuple)) else [source])]
    record, save_json = start_stamped(record), start_stamped(save_json)
    _refuse_folders(record, save_json)  # a folder given as --record is named as one, before its suffix is checked
    video = plan_video(record, stream, encoder, bitrate)   # before the model loads: a bad choice fails fast
    _check_output_files(record, save_json, specs)
    if record and bitrate and video.record_encoder == "opencv":
        log(f"warning: --bitrate {bitrate:g} does not apply to the recording: it falls back to OpenCV's writer "
            "(no GStreamer encoder here), which takes no bitrate")
    for spec in specs:  # a bad source (e.g. an empty one) is named before the model loads
        if isinstance(spec, (str, int)):
            parse_source(spec)
    wanted = parse_classes(classes)
    if isinstance(model, (str, Path)):
        ids_only = wanted is not None and all(isinstance(c, int) for c in wanted)
        detector = load_detector(model, conf, iou, wanted if ids_only else None, backend)
        post_filter = None if ids_only else resolve_classes(wanted, detector.names)
    else:
        detector = model
        post_filter = resolve_classes(wanted, getattr(detector, "names", {}) or {})
    names = getattr(detector, "names", {}) or {}
    if isinstance(model, (str, Path)) and getattr(detector, "backend", None) is not None:
        log(f"model: {model} on {describe_backend(detector.backend)}")
        if warning := getattr(detector.backend, "accuracy_warning", None):  # an INT8 scheme that saturates here
            log(f"warning: {warning}")
    if show is None or show:
        problem = display_problem()
        if problem and (show or "is set but" in problem):  # asked for a window, or a display that looks usable
            log(f"{problem}: running headless")
        show = problem is None

    frame_hw = getattr(detector, "frame", None)
    if frame_hw is not None:  # the model's letterbox is in its graph: it takes frames of one size
        specs = [s if isinstance(s, FrameSource) else at_frame_size(s, frame_hw) for s in (specs or [None])]
        kinds = {s.kind if isinstance(s, SourceSpec) else parse_source(s).kind for s in specs
                 if not isinstance(s, FrameSource)}
        if kinds == {"images"} and isinstance(model, (str, Path)):
            # photos come in any size, and no single --frame fits a folder of them; beside a camera or a video (whose
            # frames of another size are refused: export the model at their size) they are not fitted
            detector.fit_frames = True
            log(f"images: each photo not {frame_hw[1]}x{frame_hw[0]} is letterboxed to that frame size on the host "
                "first, as `detdistill eval` does")
    t_zero = time.monotonic()  # before any capture starts: no frame of any source is grabbed earlier
    srcs = open_sources(specs or [None], log, max_reconnects=max_reconnects, reconnect_delay_s=reconnect_delay_s,
                        stall_timeout_s=stall_timeout_s)
    sources = SourceSet(srcs, max_frames=max_frames, log=log)
    for i, src in enumerate(srcs):
        log(f"source{f' {i}' if len(srcs) > 1 else ''}: {src.description}")
    stop = threading.Event()
    pipeline: Pipeline | None = None
    interrupted = stopped = False
    try:
        outputs = Outputs(srcs, names, stop, show=show, record=record, save_json=save_json, window=window,
                          max_fps=max_fps, post_filter=post_filter, stats_every_s=stats_every_s, log=log,
                          on_frame=on_frame, video=video, t_zero=t_zero)
    except BaseException:
        sources.close()
        raise
    try:
        with _stop_on_signals(stop):
            outputs.start()
            if sync:
                _serial_loop(detector, sources, outputs, stop, max_fps)
            else:
                stages = stages_for(detector, max_batch=len(srcs))
                if len(srcs) > 1 and stages.max_batch == 1:
                    why = "its batch axis is fixed" if stages.split else "a detector object takes one frame a call"
                    log(f"the sources take turns in the model ({why}); export with a dynamic batch to batch them")
                pipeline = Pipeline(stages, sources, stop, max_fps=max_fps).start()
                _pipelined_loop(pipeline, outputs, stop, log)
            stopped = stop.is_set()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pipeline is not None:
            hung = pipeline.shutdown()
            if hung:
                log(f"threads still busy at exit (abandoned): {', '.join(hung)}")
            if pipeline.dropped_in_flight:
                log(f"{pipeline.dropped_in_flight} frames still in the pipeline at the stop were not shown or saved")
        sources.close()
        outputs.close()
    error = pipeline.error if pipeline is not None else None
    if error is not None and not isinstance(error, KeyboardInterrupt):
        raise error
    interrupted = interrupted or error is not None or (stopped and not sources.finished)
    summary = outputs.summary(mode="serial" if sync else "pipelined", interrupted=interrupted,
                              queue_high_water=pipeline.high_water if pipeline is not None else None)
    log(summary.format())
    outputs.report_files()
    return summary
