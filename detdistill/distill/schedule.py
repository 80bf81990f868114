"""KD weight schedules over training epochs."""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Schedule:
    """Multiplier applied to every KD loss weight at a given epoch.

    kind: ``constant`` (1 throughout), ``linear`` or ``cosine`` decay from 1 to ``final``.
    stop_last: KD is off (factor 0) for the last N epochs; ``"close_mosaic"`` means the epochs that train
        without mosaic, as in RTMDet, whose distillation stops for its final no-mosaic stage (20 of 300
        epochs) — capped at a quarter of the run, so that short runs (ultralytics closes mosaic for the
        last 10 epochs by default) still distill for most of their length.
    """

    kind: str = "constant"
    final: float = 1.0
    stop_last: int | str = 0

    def off_throughout(self, epochs: int, close_mosaic: int = 0) -> bool:
        """True when ``stop_last`` leaves no epoch of ``epochs`` with KD on: such a run trains without a teacher."""
        return self.factor(0, epochs, close_mosaic) == 0.0

    def factor(self, epoch: int, epochs: int, close_mosaic: int = 0) -> float:
        """KD multiplier at 0-based ``epoch`` of ``epochs``."""
        stop = min(close_mosaic, epochs // 4) if self.stop_last == "close_mosaic" else int(self.stop_last)
        active = max(epochs - stop, 0)
        if epoch >= active:
            return 0.0
        progress = epoch / max(active - 1, 1)
        if self.kind == "linear":
            return 1.0 + (self.final - 1.0) * progress
        if self.kind == "cosine":
            return self.final + (1.0 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0
