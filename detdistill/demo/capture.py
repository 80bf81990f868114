"""Threaded frame capture: always hand out the newest frame, reconnect live sources.

A ``Grabber`` is one opened device, file or stream (``read()`` returns a BGR frame or
``None``). ``FrameSource`` runs it in a background thread:

* live sources (cameras, streams): a one-frame slot that the thread overwrites, so the
  consumer always gets the newest frame and never a backlog; overwritten frames are counted
  as dropped. A read failure or a stall (no frame for ``stall_timeout_s``) triggers a bounded
  number of reconnect attempts.
* finite sources (video files, image folders): the thread waits until the consumer took the
  previous frame, so every frame is processed; the end of the file ends the stream cleanly.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np


class SourceError(RuntimeError):
    """A source cannot be opened (the message says why and what to try)."""


class Grabber(Protocol):
    """One opened frame source; ``read`` blocks until the next frame."""

    description: str
    fps: float | None
    # optional: ``ended = True`` tells a live source that None means "clip over", not "lost"

    def read(self) -> np.ndarray | None:
        """Next BGR frame, or ``None`` at end of stream or on failure."""

    def close(self) -> None:
        """Release the device."""


@dataclass
class Frame:
    """A captured frame and when it left the grabber."""

    image: np.ndarray
    index: int          # sequence number among all frames grabbed (dropped ones included)
    t_grabbed: float    # time.monotonic() when the grabber returned it (finite sources: handed out)
    grab_ms: float      # time spent inside Grabber.read (decode and sensor wait)
    origin: str | None = None  # the file it was read from, for sources that read one file per frame


class FrameSource:
    """Background capture with a latest-frame policy (live) or back-pressure (finite)."""

    def __init__(
        self,
        open_grabber: Callable[[], Grabber],
        *,
        live: bool,
        name: str = "source",
        max_reconnects: int = 5,
        reconnect_delay_s: float = 1.0,
        stall_timeout_s: float = 5.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._open_grabber = open_grabber
        self.live = live
        self.name = name
        self.max_reconnects = max_reconnects
        self.reconnect_delay_s = reconnect_delay_s
        self.stall_timeout_s = stall_timeout_s
        self._log = log or (lambda message: None)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._slot: Frame | None = None
        self._gen = 0
        self._threads: list[threading.Thread] = []
        self._last_activity = time.monotonic()
        self._failures_in_row = 0
        self.grabbed = 0
        self.delivered = 0
        self.dropped = 0
        self.reconnects = 0
        self.finished = False
        self.error: str | None = None
        self.description = name
        self.fps: float | None = None
        self.started = False
        self.ready: threading.Event | None = None   # set on every new frame and at the end (optional)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "FrameSource":
        """Open the source (raises ``SourceError`` at once if unreachable) and start reading."""
        if self.started:
            raise RuntimeError(f"{self.name} is already started")
        grabber = self._open_grabber()
        self.started = True
        self._adopt(grabber)
        self._spawn(self._gen, grabber)
        return self

    def close(self) -> None:
        """Stop the capture thread and release the device."""
        self._stop.set()
        with self._cond:
            self.finished = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2.0)   # a thread stuck in a driver call is a daemon: abandon it

    def __enter__(self) -> "FrameSource":
        return self if self.started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consumer side ---------------------------------------------------------------------
    def read(self, timeout: float | None = None) -> Frame | None:
        """Newest frame not yet handed out, or ``None`` on timeout or once ``finished``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._slot is None and not self.finished:
                if self._stalled():
                    self._restart_locked(f"no frame for {self.stall_timeout_s:.1f} s")
                wait = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
                if wait <= 0:
                    break
                self._cond.wait(wait)
            frame, self._slot = self._slot, None
            if frame is not None:
                self.delivered += 1
                if not self.live:
                    # a file has no moment of capture: its frames "arrive" when handed out
                    # (prefetching one frame ahead must not count as latency)
                    frame.t_grabbed = time.monotonic()
                self._cond.notify_all()
            return frame

    # -- capture thread --------------------------------------------------------------------
    def _adopt(self, grabber: Grabber) -> None:
        self.description = getattr(grabber, "description", self.name)
        self.fps = getattr(grabber, "fps", None) or self.fps

    def _spawn(self, gen: int, grabber: Grabber | None) -> None:
        thread = threading.Thread(target=self._run, args=(gen, grabber), name=f"capture-{gen}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _current(self, gen: int) -> bool:
        return gen == self._gen and not self._stop.is_set()

    def _run(self, gen: int, grabber: Grabber | None) -> None:
        try:
            if grabber is None:
                grabber = self._reconnect(gen)
            while grabber is not None and self._current(gen):
                t0 = time.monotonic()
                failure = None
                try:
                    image = grabber.read()
                except Exception as exc:  # a driver error is a read failure like any other
                    failure = f"{self.name}: read error: {exc}"
                    self._log(failure)
                    image = None
                t1 = time.monotonic()
                if not self._current(gen):
                    break
                if image is None:
                    if not self.live or getattr(grabber, "ended", False):
                        if note := getattr(grabber, "end_note", None):  # e.g. unreadable images skipped
                            self._log(f"{self.name}: {note}")
                        self._finish(failure)   # a file that cannot be read on is an error, not its end
                        break
                    self._log(f"{self.name}: read failed, reconnecting")
                    grabber.close()
                    grabber = self._reconnect(gen)
                    continue
                self._publish(gen, Frame(image, 0, t1, (t1 - t0) * 1000.0, getattr(grabber, "current", None)))
        finally:
            if grabber is not None:
                grabber.close()

    def _publish(self, gen: int, frame: Frame) -> None:
        with self._cond:
            if not self.live:
                while self._slot is not None and self._current(gen):
                    self._cond.wait(0.05)
            if not self._current(gen):
                return
            if self._slot is not None:
                self.dropped += 1
            frame.index = self.grabbed
            self.grabbed += 1
            self._slot = frame
            self._last_activity = time.monotonic()
            self._failures_in_row = 0
            self._cond.notify_all()
        if self.ready is not None:
            self.ready.set()

    def _reconnect(self, gen: int) -> Grabber | None:
        """Reopen the source, up to ``max_reconnects`` attempts in a row; None if given up."""
        while self._current(gen):
            with self._cond:
                if self._failures_in_row >= self.max_reconnects:
                    self._finish_locked(
                        f"{self.name}: lost, gave up after {self.max_reconnects} reconnect attempts"
                    )
                    return None
                self._failures_in_row += 1
                self.reconnects += 1
                attempt = self._failures_in_row
            self._log(f"{self.name}: reconnect attempt {attempt}/{self.max_reconnects}")
            if self._stop.wait(self.reconnect_delay_s):
                return None
            try:
                grabber = self._open_grabber()
            except SourceError as exc:
                self._log(f"{self.name}: {exc}")
                continue
            with self._cond:
                if not self._current(gen):
                    grabber.close()
                    return None
                self._adopt(grabber)
                self._last_activity = time.monotonic()
            return grabber
        return None

    def _stalled(self) -> bool:
        return (
            self.live
            and not self.finished
            and time.monotonic() - self._last_activity > self.stall_timeout_s
        )

    def _restart_locked(self, reason: str) -> None:
        """Abandon a stuck capture thread and reconnect in a fresh one (lock held)."""
        self._log(f"{self.name}: {reason}, reconnecting")
        self._gen += 1
        self._last_activity = time.monotonic()
        self._spawn(self._gen, None)

    def _finish(self, error: str | None) -> None:
        with self._cond:
            self._finish_locked(error)

    def _finish_locked(self, error: str | None) -> None:
        self.finished = True
        self.error = error
        self._cond.notify_all()
        if self.ready is not None:
            self.ready.set()
