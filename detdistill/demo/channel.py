"""A bounded FIFO between two pipeline stages, with end-of-stream and abort.

``close()`` marks the end of the stream: the consumer still gets what is queued, then ``None``.
``abort()`` also drops what is queued and makes ``put`` fail, so a blocked producer returns at
once. ``high_water`` is the largest length the queue ever had (it never exceeds ``size``).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Channel(Generic[T]):
    """Bounded queue of ``size`` items for one producer stage and one consumer stage."""

    def __init__(self, name: str, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"channel {name}: size must be >= 1, got {size}")
        self.name = name
        self.size = size
        self.high_water = 0
        self.puts = 0
        self.closed = False
        self.aborted = False
        self._items: deque[T] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Block until a ``put`` would not block; False on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) < self.size or self.closed, timeout)
            return len(self._items) < self.size and not self.closed

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Append ``item``, waiting for room; False (item not queued) on timeout or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._items) < self.size or self.closed, timeout)
            if self.closed or len(self._items) >= self.size:
                return False
            self._items.append(item)
            self.puts += 1
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Oldest item; ``None`` on timeout or at the end of the stream (see ``finished``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self.closed, timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    @property
    def finished(self) -> bool:
        """True once closed and drained: ``get`` will only return ``None`` from now on."""
        return self.closed and not self._items

    def close(self) -> None:
        """End of stream: no more puts, queued items are still delivered."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def abort(self) -> list[Any]:
        """Close and drop what is queued (returned, e.g. to count it)."""
        with self._cond:
            self.closed = self.aborted = True
            dropped = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return dropped
