"""The output stage: draw, show, record, stream and log each frame, and keep the run's statistics.

One window, recording, stream and ``RunStats`` per source (``--record out.mp4`` with several sources
writes ``out-0.mp4``, ``out-1.mp4``, ...; ``--stream udp://H:5000`` sends to ports 5000, 5001, ...);
one JSON Lines file for all, each record naming its source. Used by both loops, always on the
caller's (main) thread, where OpenCV's GUI must run.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from .capture import Frame, FrameSource
from .encoders import CODEC, VideoPlan, receiver_command, stream_targets
from .overlay import draw_detections, draw_hud, hud_lines
from .recorder import DetectionLog, VideoRecorder, VideoStreamer
from .stats import RunStats, SourceSummary, Summary

QUIT_KEYS = {ord("q"), ord("Q"), 27}


def arrays(result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``boxes (N,4)`` float32, ``scores (N,)`` float32, ``class_ids (N,)`` int64 of a detections object."""
    boxes = np.asarray(result.boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
    class_ids = np.asarray(result.class_ids, dtype=np.int64).reshape(-1)
    return boxes, scores, class_ids


def recording_paths(record: str | Path, count: int) -> list[Path]:
    """``out.mp4`` for one source, ``out-0.mp4``, ``out-1.mp4``, ... for several."""
    path = Path(record)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(count)]


class Outputs:
    """Draws and emits finished frames; ``summary()`` at the end."""

    def __init__(
        self,
        sources: Sequence[FrameSource],
        names: dict[int, str],
        stop: threading.Event,
        *,
        show: bool = False,
        record: str | Path | None = None,
        save_json: str | Path | None = None,
        window: str = "detdistill demo",
        max_fps: float = 0.0,
        post_filter: list[int] | None = None,
        stats_every_s: float = 5.0,
        log: Callable[[str], None] = print,
        on_frame: Callable[[int, np.ndarray, Any], None] | None = None,
        video: VideoPlan | None = None,
        t_zero: float | None = None,
    ) -> None:
        self.sources = list(sources)
        self.t_zero = t_zero  # time.monotonic() the detections file counts time_s from (None: the loop's start)
        self.names = names
        self.stop = stop
        self.show = show
        self.post_filter = post_filter
        self.stats_every_s = stats_every_s
        self.log = log
        self.on_frame = on_frame
        count = len(self.sources)
        self.windows = [window] if count == 1 else [f"{window} [{i}]" for i in range(count)]
        self.open_windows: set[str] = set()
        self.recorders: list[VideoRecorder | None] = [None] * count
        self.streamers: list[VideoStreamer | None] = [None] * count
        video = video or VideoPlan()
        rates = [min(filter(None, [src.fps or 30.0, max_fps or None])) for src in self.sources]
        if record:
            for i, path in enumerate(recording_paths(record, count)):
                self.recorders[i] = VideoRecorder(path, fps=rates[i], encoder=video.record_encoder,
                                                  fallback=video.record_fallback, bitrate=video.bitrate, log=log)
                log(f"recording: {path} with {self.recorders[i].describe()}")
        if video.stream is not None and video.stream_encoder is not None:
            for i, target in enumerate(stream_targets(video.stream, count)):
                self.streamers[i] = VideoStreamer(target, fps=rates[i], encoder=video.stream_encoder,
                                                  fallback=video.stream_fallback, bitrate=video.bitrate, log=log)
                log(f"streaming: {target.url} with {self.streamers[i].describe()}")
                if target.scheme == "udp":
                    log(f"  watch it on {target.host} with: {receiver_command(target, CODEC[video.stream_encoder])}")
        self.json_log = DetectionLog(save_json, names) if save_json else None
        self.stats = RunStats()
        self.source_stats = [RunStats() for _ in range(count)]
        self.frame_numbers = [0] * count
        self.frames_out = 0
        self.batches = 0
        self.engine_ms = 0.0
        self.decode_ms = 0.0
        self._last_print = time.monotonic()

    def start(self) -> None:
        now = time.monotonic()
        self.stats.start(now)
        for stats in self.source_stats:
            stats.start(now)
        self._last_print = now

    # -- per batch -----------------------------------------------------------------------------
    def emit(self, frames: Sequence[tuple[int, Frame]], results: Sequence[Any], stage_ms: dict[str, float]) -> None:
        """Draw, show, record and log one batch; ``stage_ms`` is the batch's time per stage so far."""
        t0 = time.monotonic()
        drawn = []
        for (i, frame), result in zip(frames, results):
            boxes, scores, class_ids = arrays(result)
            if self.post_filter is not None:
                keep = np.isin(class_ids, self.post_filter)
                boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
            stats = self.source_stats[i]
            draw_detections(frame.image, boxes, scores, class_ids, self.names)
            draw_hud(frame.image, hud_lines(stats.fps(), stats.recent_latency_ms(), stats.recent_stage_ms(),
                                            self.sources[i].dropped, len(scores)))
            drawn.append((boxes, scores, class_ids))
        t_draw = time.monotonic()
        for (i, frame), (boxes, scores, class_ids) in zip(frames, drawn):
            if self.show:
                self._imshow(self.windows[i], frame.image)
            for writer in (self.recorders[i], self.streamers[i]):
                if writer is not None:
                    writer.write(frame.image)
            if self.json_log is not None:
                t_zero = self.stats.t_start if self.t_zero is None else self.t_zero
                self.json_log.write(self.frame_numbers[i], frame.index, frame.t_grabbed - (t_zero or 0.0),
                                    frame.image.shape, boxes, scores, class_ids, source=i, image=frame.origin)
        if self.show:
            self.poll_keys()
        t_out = time.monotonic()
        self._account(frames, results, stage_ms, (t_draw - t0) * 1e3, (t_out - t_draw) * 1e3, t_out)

    def _account(self, frames: Sequence[tuple[int, Frame]], results: Sequence[Any], stage_ms: dict[str, float],
                 draw_ms: float, output_ms: float, t_out: float) -> None:
        n = len(frames)
        per_frame = {key: stage_ms.get(key, 0.0) / n for key in ("capture", "preprocess", "inference", "postprocess")}
        per_frame["draw"] = draw_ms / n
        per_frame["output"] = output_ms / n
        self.batches += 1
        self.engine_ms += stage_ms.get("inference", 0.0)
        for (i, frame), result in zip(frames, results):
            latency = (t_out - frame.t_grabbed) * 1e3
            self.stats.add(latency, per_frame, now=t_out)
            self.source_stats[i].add(latency, per_frame, now=t_out)
            self.decode_ms += frame.grab_ms
            if self.on_frame is not None:
                self.on_frame(self.frames_out, frame.image, result)
            self.frame_numbers[i] += 1
            self.frames_out += 1
        if not self.show and t_out - self._last_print >= self.stats_every_s:
            self.log(self.stats.line(sum(s.dropped for s in self.sources)))
            if len(self.sources) > 1:
                self.log("  " + " | ".join(f"[{i}] {s.fps():.1f} FPS" for i, s in enumerate(self.source_stats)))
            self._last_print = t_out

    # -- window ----------------------------------------------------------------------------------
    def _imshow(self, window: str, image: np.ndarray) -> None:
        if window not in self.open_windows:   # 1:1 pixels, no Qt toolbar (WINDOW_NORMAL may never map under Xvfb)
            cv2.namedWindow(window, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            self.open_windows.add(window)
        cv2.imshow(window, image)

    def poll_keys(self) -> None:
        """Let the windows paint; q, Esc or closing a window asks the run to stop."""
        if not self.open_windows:
            return
        key = cv2.waitKey(1) & 0xFF
        closed = any(cv2.getWindowProperty(w, cv2.WND_PROP_VISIBLE) < 1 for w in self.open_windows)
        if key in QUIT_KEYS or closed:
            self.stop.set()

    def idle(self) -> None:
        """Nothing to output right now: keep the windows responsive."""
        if self.show:
            self.poll_keys()

    # -- end -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Finalise recordings and the detections file, close the windows (all of it, even on errors)."""
        errors = []
        for writer in [*self.recorders, *self.streamers]:
            if writer is not None:
                try:
                    writer.close()
                except RuntimeError as exc:
                    errors.append(exc)
        if self.json_log is not None:
            self.json_log.close()
        for window in self.open_windows:
            cv2.destroyWindow(window)
        if self.open_windows:
            cv2.waitKey(1)
        self.open_windows.clear()
        if errors:
            raise errors[0]

    def summary(self, *, mode: str, interrupted: bool, queue_high_water: dict[str, int] | None = None) -> Summary:
        errors = [s.error for s in self.sources if s.error]
        per_source = []
        if len(self.sources) > 1:
            for i, (src, stats) in enumerate(zip(self.sources, self.source_stats)):
                part = stats.summary()
                per_source.append(SourceSummary(i, src.name, part.frames, part.mean_fps, part.latency_p50_ms,
                                                part.latency_p95_ms, src.dropped, src.reconnects, src.error))
        wall_ms = self.stats.elapsed() * 1e3
        return self.stats.summary(
            dropped=sum(s.dropped for s in self.sources),
            reconnects=sum(s.reconnects for s in self.sources),
            interrupted=interrupted,
            error="; ".join(errors) if errors else None,
            mode=mode,
            engine_busy=min(1.0, self.engine_ms / wall_ms) if wall_ms > 0 else 0.0,
            batch=self.frames_out / self.batches if self.batches else 1.0,
            decode_ms=self.decode_ms / self.frames_out if self.frames_out else 0.0,
            queue_high_water=dict(queue_high_water or {}),
            sources=per_source,
        )

    def report_files(self) -> None:
        """Log where the recordings, streams and detections went, and with which encoder."""
        for recorder in self.recorders:
            if recorder is not None:
                self.log(f"recording: {recorder.path} ({recorder.frames} frames, {recorder.describe()})")
        for streamer in self.streamers:
            if streamer is not None:
                self.log(f"stream: {streamer.target.url} ({streamer.frames} frames, {streamer.describe()})")
        if self.json_log is not None:
            self.log(f"detections: {self.json_log.path} ({self.json_log.frames} frames)")
