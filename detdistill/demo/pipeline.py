"""The pipelined demo loop's worker threads: capture + preprocess, inference, postprocess.

::

    sources --> [read + prepare] --1--> [infer] --1--> [finish] --1--> caller: draw, show, record

Each arrow is a :class:`~detdistill.demo.channel.Channel` of one batch, so frame N+1 is being
prepared and frame N-1 drawn while frame N is in the engine, and a slow stage blocks the ones
before it instead of piling frames up. The reader waits for room *before* it takes frames, so a
live source's newest-frame policy still decides which frame goes in (stale ones are dropped and
counted by ``FrameSource``); file sources are read completely, in order.

Just in time: while the engine is busy, the reader waits until the engine is expected to be
free in (reading + preparing time + a slack of a quarter of the engine time) before it takes the
next frames, so they wait less in front of the engine (lower latency, fresher live frames) and
the engine still never waits for them when the estimates hold.

Stopping (``stop`` set by the user, the end of every source, ``max_frames``, or an exception in
a stage) ends the intake; what is already in flight is finished and handed out, then ``get``
returns ``None`` with ``finished`` true. ``shutdown`` aborts whatever is left and joins the
threads. An exception in a stage stops the run and is kept in ``error``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .capture import Frame
from .channel import Channel
from .gather import SourceSet

QUEUE_SIZE = 1   # batches waiting between two stages
EMA = 0.1        # weight of the newest sample in the running estimates of stage times


@dataclass
class Job:
    """One batch on its way through the stages."""

    frames: list[tuple[int, Frame]]               # (source number, frame)
    data: Any = None                              # engine input, then the raw outputs
    infos: list[Any] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    stage_ms: dict[str, float] = field(default_factory=dict)   # per batch


class Pipeline:
    """Runs ``stages`` (see ``detdistill.demo.stages``) over ``sources`` in three worker threads."""

    def __init__(self, stages: Any, sources: SourceSet, stop: threading.Event, *, max_fps: float = 0.0,
                 queue_size: int = QUEUE_SIZE, just_in_time: bool = True) -> None:
        self.stages = stages
        self.sources = sources
        self.stop = stop
        self.period = 1.0 / max_fps if max_fps and max_fps > 0 else 0.0
        self.just_in_time = just_in_time
        self._infer_s = 0.0                  # running estimate of one engine call
        self._prepare_s = 0.0                # ... of reading + preparing one batch
        self._infer_started: float | None = None   # when the call in the engine began (None: idle)
        self.channels = [Channel("infer", queue_size), Channel("postprocess", queue_size),
                         Channel("output", queue_size)]
        self.error: BaseException | None = None
        self.dropped_in_flight = 0
        self._threads: list[threading.Thread] = []

    # -- caller side ---------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        to_infer, to_post, to_output = self.channels
        targets: list[tuple[str, Callable[[], None]]] = [
            ("demo-read", self._read),
            ("demo-infer", lambda: self._stage(self._infer, to_infer, to_post)),
            ("demo-postprocess", lambda: self._stage(self._finish, to_post, to_output)),
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def get(self, timeout: float | None = None) -> Job | None:
        """The next finished batch, or ``None`` on timeout / at the end (then ``finished`` is true)."""
        return self.channels[-1].get(timeout)

    @property
    def finished(self) -> bool:
        return self.channels[-1].finished

    def shutdown(self, timeout: float = 5.0) -> list[str]:
        """Stop, drop what is still queued, join the threads; returns the names of threads that hung."""
        self.stop.set()
        for channel in self.channels:
            self.dropped_in_flight += sum(len(job.frames) for job in channel.abort())
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    @property
    def high_water(self) -> dict[str, int]:
        """The most batches each channel ever held."""
        return {c.name: c.high_water for c in self.channels}

    # -- worker threads ------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def _stage(self, work: Callable[[Job], None], inbox: Channel, outbox: Channel) -> None:
        try:
            while (job := inbox.get()) is not None:
                work(job)
                if not outbox.put(job):
                    break
        except BaseException as exc:   # KeyboardInterrupt from a detector too: stop, keep what is done
            self._fail(exc)
            self.dropped_in_flight += sum(len(j.frames) for j in inbox.abort())
        finally:
            outbox.close()

    def _read(self) -> None:
        """Capture + preprocess: wait for room downstream, take the newest frames, prepare them."""
        outbox = self.channels[0]
        waited = 0.0
        next_due = 0.0
        try:
            while not self.stop.is_set() and not self.sources.finished:
                if not outbox.wait_for_room(0.1):
                    if outbox.closed:
                        break
                    continue
                if self.period:
                    delay = next_due - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        break
                    next_due = max(next_due, time.monotonic()) + self.period
                if self.stop.wait(self._lead_time()):
                    break
                t0 = time.perf_counter()
                frames = self.sources.read(timeout=0.1)
                waited += (time.perf_counter() - t0) * 1e3
                step = self.stages.max_batch
                for start in range(0, len(frames), step):
                    chunk = frames[start:start + step]
                    data, infos, ms = self.stages.prepare([frame.image for _, frame in chunk])
                    job = Job(chunk, data, infos, stage_ms={"capture": waited, "preprocess": ms})
                    waited = 0.0
                    if start == 0:
                        self._prepare_s = _update(self._prepare_s, time.perf_counter() - t0)
                    if not outbox.put(job):
                        return
        except BaseException as exc:
            self._fail(exc)
        finally:
            outbox.close()

    def _lead_time(self) -> float:
        """Seconds to wait before taking frames, so they reach the engine just as it frees up."""
        started = self._infer_started
        if not self.just_in_time or started is None:
            return 0.0
        free_at = started + self._infer_s
        return max(0.0, free_at - self._prepare_s - 0.25 * self._infer_s - time.perf_counter())

    def _infer(self, job: Job) -> None:
        t0 = self._infer_started = time.perf_counter()
        try:
            job.data, ms = self.stages.infer(job.data)
        finally:
            self._infer_started = None
        self._infer_s = _update(self._infer_s, time.perf_counter() - t0)
        for key, value in ms.items():
            job.stage_ms[key] = job.stage_ms.get(key, 0.0) + value

    def _finish(self, job: Job) -> None:
        job.results, ms = self.stages.finish(job.data, job.infos)
        job.data = None
        job.stage_ms["postprocess"] = job.stage_ms.get("postprocess", 0.0) + ms


def _update(estimate: float, sample: float) -> float:
    """Running (exponential) mean; the first sample starts it."""
    return estimate + EMA * (sample - estimate) if estimate else sample
