"""Read the next frame of every source at once (one batch), for one or several sources.

Live sources hand out their newest frame when one is there (``FrameSource`` drops and counts
stale ones); finite sources (files, folders) are waited for, so every frame of every file is
read, in order, and batches stay full. A source that ends or fails leaves the set with a message;
the others keep running.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from .capture import Frame, FrameSource


class SourceSet:
    """The run's sources; ``read()`` returns ``[(source number, frame), ...]``."""

    def __init__(self, sources: Sequence[FrameSource], *, max_frames: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        self.sources = list(sources)
        self.max_frames = max_frames
        self.read_counts = [0] * len(self.sources)
        self.active = list(range(len(self.sources)))
        self._log = log or (lambda message: None)
        self._ready = threading.Event()
        for source in self.sources:
            source.ready = self._ready

    @property
    def finished(self) -> bool:
        """True when no source has frames left (ended, failed or read ``max_frames`` times)."""
        return not self.active

    def label(self, i: int) -> str:
        """``source 1 (clip.mp4)`` when there are several sources, else the source's name."""
        name = self.sources[i].name
        return f"source {i} ({name})" if len(self.sources) > 1 else name

    def read(self, timeout: float = 0.1) -> list[tuple[int, Frame]]:
        """One frame of each source that has one (waiting up to ``timeout`` for the first)."""
        batch = self._poll(timeout)
        if not batch and self.active:
            self._ready.wait(timeout)
            batch = self._poll(timeout)
        return batch

    def _poll(self, timeout: float) -> list[tuple[int, Frame]]:
        self._ready.clear()
        batch = []
        for i in list(self.active):
            source = self.sources[i]
            frame = source.read(timeout=0.0 if source.live else timeout)
            if frame is not None:
                batch.append((i, frame))
                self.read_counts[i] += 1
                if self.max_frames and self.read_counts[i] >= self.max_frames:
                    self.active.remove(i)
            elif source.finished:
                self._retire(i)
        return batch

    def _retire(self, i: int) -> None:
        self.active.remove(i)
        error = self.sources[i].error
        if error is None:
            return
        rest = f"; {len(self.active)} other source(s) keep running" if self.active else ""
        self._log(f"{self.label(i)} failed: {error}{rest}")

    def close(self) -> None:
        for source in self.sources:
            source.close()
