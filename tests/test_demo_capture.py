"""FrameSource: latest-frame policy, back-pressure for files, reconnects, stalls, end of stream."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from detdistill.demo.capture import FrameSource, SourceError


class CountingGrabber:
    """A fake camera: frame k is filled with k % 256, one every ``period`` seconds.

    After ``fail_after`` frames ``read`` returns None (unplugged); after ``stall_after`` frames
    it blocks until ``release`` is set (a hung driver).
    """

    def __init__(self, period=0.002, fail_after=None, stall_after=None, release=None, start=0):
        self.period, self.fail_after, self.stall_after = period, fail_after, stall_after
        self.release = release or threading.Event()
        self.count = 0
        self.start = start
        self.closed = False
        self.description = "fake camera"
        self.fps = 1 / period if period else None

    def read(self):
        if self.fail_after is not None and self.count >= self.fail_after:
            return None
        if self.stall_after is not None and self.count >= self.stall_after:
            self.release.wait()
            return None
        time.sleep(self.period)
        self.count += 1
        return np.full((4, 4, 3), (self.start + self.count) % 256, np.uint8)

    def close(self):
        self.closed = True


def _read_n(source, n, timeout=5.0):
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        frame = source.read(timeout=0.1)
        if frame is not None:
            frames.append(frame)
        elif source.finished:
            break
    return frames


def test_live_source_hands_out_newest_frame_and_counts_drops():
    grabbers = []

    def factory():
        grabbers.append(CountingGrabber(period=0.01))
        return grabbers[-1]

    with FrameSource(factory, live=True) as src:
        previous = -1
        for _ in range(8):
            time.sleep(0.05)                       # a slow consumer (inference)
            frame = src.read(timeout=1.0)
            assert frame is not None
            # the frame is the newest one: nothing newer than it had been grabbed yet
            assert frame.index >= src.grabbed - 2
            assert frame.index > previous
            previous = frame.index
        assert src.dropped > 0
        # every grabbed frame was either handed out, dropped, or is waiting in the single slot
        assert src.grabbed - src.delivered - src.dropped in (0, 1)
        assert src.reconnects == 0
    assert grabbers[0].closed


def test_finite_source_processes_every_frame_then_ends():
    def factory():
        return CountingGrabber(period=0.0, fail_after=25)

    with FrameSource(factory, live=False) as src:
        frames = []
        while (frame := src.read(timeout=1.0)) is not None or not src.finished:
            if frame is not None:
                time.sleep(0.002)
                frames.append(frame)
        assert [f.index for f in frames] == list(range(25))
        assert [int(f.image[0, 0, 0]) for f in frames] == list(range(1, 26))
        assert src.dropped == 0 and src.finished and src.error is None and src.reconnects == 0


def test_live_source_reconnects_after_read_failure():
    opened = []

    def factory():
        if len(opened) == 1:                    # the first reconnect finds the device still gone
            opened.append(None)
            raise SourceError("device busy")
        grabber = CountingGrabber(fail_after=3 if not opened else None, start=100 * len(opened))
        opened.append(grabber)
        return grabber

    logs = []
    with FrameSource(factory, live=True, reconnect_delay_s=0.01, max_reconnects=3, log=logs.append) as src:
        frames = _read_n(src, 6)
        assert len(frames) == 6
        assert src.reconnects == 2 and not src.finished
        assert any(int(f.image[0, 0, 0]) > 200 for f in frames)   # frames from the third grabber
    assert opened[0].closed
    assert any("reconnect attempt 1/3" in line for line in logs)


def test_live_source_gives_up_after_bounded_attempts():
    calls = []

    def factory():
        calls.append(1)
        if len(calls) > 1:
            raise SourceError("no such device")
        return CountingGrabber(fail_after=2)

    with FrameSource(factory, live=True, reconnect_delay_s=0.0, max_reconnects=3) as src:
        frames = _read_n(src, 10)
        assert len(frames) <= 2
        assert src.finished
        assert "gave up after 3 reconnect attempts" in src.error
        assert src.reconnects == 3 and len(calls) == 4


def test_stalled_source_is_abandoned_and_reopened():
    release = threading.Event()
    grabbers = []

    def factory():
        g = CountingGrabber(stall_after=2 if not grabbers else None, release=release, start=100 * len(grabbers))
        grabbers.append(g)
        return g

    try:
        with FrameSource(factory, live=True, stall_timeout_s=0.2, reconnect_delay_s=0.01) as src:
            frames = _read_n(src, 5, timeout=5.0)
            assert len(frames) == 5
            assert src.reconnects >= 1
            assert len(grabbers) >= 2 and int(frames[-1].image[0, 0, 0]) > 100
    finally:
        release.set()                            # let the hung thread return and close its device
    deadline = time.monotonic() + 30  # returns as soon as it is closed; the bound only stops a hang
    while not grabbers[0].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert grabbers[0].closed


def test_first_open_failure_raises_at_once():
    def factory():
        raise SourceError("camera /dev/video7 does not exist")

    with pytest.raises(SourceError, match="does not exist"):
        FrameSource(factory, live=True).start()


def test_ended_live_clip_finishes_without_reconnecting():
    class Clip(CountingGrabber):
        def read(self):
            if self.count >= 4:
                self.ended = True
                return None
            return super().read()

    with FrameSource(lambda: Clip(period=0.0), live=True, reconnect_delay_s=0.0) as src:
        _read_n(src, 10, timeout=2.0)
        assert src.finished and src.reconnects == 0 and src.error is None
