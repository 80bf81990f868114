"""Run statistics: rolling FPS and stage times for the overlay, a summary at the end.

End-to-end latency of a frame runs from the moment the grabber returned it to the moment it
was shown, recorded and logged: it includes the time the frame waited for the loop.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

STAGES = ("capture", "preprocess", "inference", "postprocess", "draw", "output")


def percentile(values, q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``; 0.0 when empty."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0


@dataclass
class SourceSummary:
    """One source's share of a run with several sources."""

    source: int
    name: str
    frames: int
    mean_fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    dropped: int = 0
    reconnects: int = 0
    error: str | None = None

    def format(self) -> str:
        text = (f"  source {self.source} ({self.name}): {self.frames} frames, {self.mean_fps:.1f} FPS, "
                f"latency p50 {self.latency_p50_ms:.1f} ms p95 {self.latency_p95_ms:.1f} ms, "
                f"dropped {self.dropped}, reconnects {self.reconnects}")
        return text + (f", failed: {self.error}" if self.error else "")


@dataclass
class Summary:
    """What a demo run did; ``format()`` gives the lines printed at the end.

    ``stage_ms`` is per frame (a batch's time divided by its frames). ``engine_busy`` is the share
    of the wall time spent inside the engine (a GPU-utilisation proxy); ``decode_ms`` the mean time
    a frame took inside its grabber (decoding, or waiting for the sensor).
    """

    frames: int
    seconds: float
    mean_fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_mean_ms: float
    dropped: int = 0
    reconnects: int = 0
    stage_ms: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None
    mode: str = "serial"
    engine_busy: float = 0.0
    batch: float = 1.0
    decode_ms: float = 0.0
    queue_high_water: dict[str, int] = field(default_factory=dict)
    sources: list[SourceSummary] = field(default_factory=list)

    def format(self) -> str:
        stages = "  ".join(f"{k} {v:.1f}" for k, v in self.stage_ms.items())
        lines = [
            f"summary: {self.frames} frames in {self.seconds:.1f} s, mean {self.mean_fps:.1f} FPS, "
            f"end-to-end latency p50 {self.latency_p50_ms:.1f} ms p95 {self.latency_p95_ms:.1f} ms, "
            f"dropped frames {self.dropped}, reconnects {self.reconnects}",
            f"mean stage ms: {stages}",
            f"{self.mode} loop: engine busy {100 * self.engine_busy:.0f}% of the wall time, "
            f"mean batch {self.batch:.1f}, decode {self.decode_ms:.1f} ms/frame",
        ]
        if len(self.sources) > 1:
            lines += [s.format() for s in self.sources]
        if self.interrupted:
            lines.append("stopped by the user")
        if self.error:
            lines.append(f"source error: {self.error}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)


class RunStats:
    """Collects per-frame latency and stage times.

    ``fps()`` and ``recent_stage_ms()`` look at the last ``window_s`` seconds / ``recent``
    frames (for the live overlay); ``summary()`` covers the whole run. At most ``keep``
    latencies are kept (reservoir sampling beyond that), so a run of days stays small.
    """

    def __init__(self, window_s: float = 2.0, recent: int = 30, keep: int = 100_000) -> None:
        self.window_s = window_s
        self.keep = keep
        self.frames = 0
        self.t_start: float | None = None
        self.t_last: float | None = None
        self._times: deque[float] = deque()
        self._recent: deque[dict[str, float]] = deque(maxlen=recent)
        self._recent_sums: dict[str, float] = {}     # of the stages in _recent: the overlay reads it every frame
        self._recent_latency: deque[float] = deque(maxlen=recent)
        self._latencies: list[float] = []
        self._stage_sums = dict.fromkeys(STAGES, 0.0)
        self._rng = random.Random(0)

    def start(self, now: float | None = None) -> None:
        self.t_start = time.monotonic() if now is None else now

    def add(self, latency_ms: float, stages: dict[str, float], now: float | None = None) -> None:
        """Record one finished frame."""
        now = time.monotonic() if now is None else now
        if self.t_start is None:
            self.t_start = now
        self.frames += 1
        self.t_last = now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._recent) == self._recent.maxlen:
            for key, value in self._recent[0].items():
                self._recent_sums[key] -= value
        self._recent.append(stages)
        for key, value in stages.items():
            self._recent_sums[key] = self._recent_sums.get(key, 0.0) + value
        self._recent_latency.append(latency_ms)
        for key, value in stages.items():
            self._stage_sums[key] = self._stage_sums.get(key, 0.0) + value
        if len(self._latencies) < self.keep:
            self._latencies.append(latency_ms)
        else:
            slot = self._rng.randrange(self.frames)
            if slot < self.keep:
                self._latencies[slot] = latency_ms

    def fps(self) -> float:
        """Frames per second over the last ``window_s`` seconds."""
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def recent_stage_ms(self) -> dict[str, float]:
        """Mean time per stage over the recent frames."""
        if not self._recent:
            return dict.fromkeys(STAGES, 0.0)
        keys = list(dict.fromkeys([*STAGES, *self._recent[-1]]))
        return {k: self._recent_sums.get(k, 0.0) / len(self._recent) for k in keys}

    def recent_latency_ms(self) -> float:
        return statistics.median(self._recent_latency) if self._recent_latency else 0.0

    def elapsed(self) -> float:
        if self.t_start is None or self.t_last is None:
            return 0.0
        return self.t_last - self.t_start

    def summary(self, dropped: int = 0, reconnects: int = 0, interrupted: bool = False,
                error: str | None = None, **extra) -> Summary:
        """The whole run; ``extra`` fills the other ``Summary`` fields (mode, engine_busy, ...)."""
        seconds = self.elapsed()
        frames = self.frames
        return Summary(
            frames=frames,
            seconds=seconds,
            mean_fps=frames / seconds if seconds > 0 else 0.0,
            latency_p50_ms=percentile(self._latencies, 50),
            latency_p95_ms=percentile(self._latencies, 95),
            latency_mean_ms=float(np.mean(self._latencies)) if self._latencies else 0.0,
            dropped=dropped,
            reconnects=reconnects,
            stage_ms={k: v / frames for k, v in self._stage_sums.items()} if frames else {},
            interrupted=interrupted,
            error=error,
            **extra,
        )

    def line(self, dropped: int = 0) -> str:
        """One status line for headless runs."""
        stages = self.recent_stage_ms()
        short = {"capture": "cap", "preprocess": "pre", "inference": "inf", "postprocess": "post",
                 "draw": "draw", "output": "out"}
        parts = " ".join(f"{short.get(k, k)} {v:.1f}" for k, v in stages.items())
        return (f"frames {self.frames} | {self.fps():.1f} FPS | latency p50 {self.recent_latency_ms():.1f} ms"
                f" | ms: {parts} | dropped {dropped}")
