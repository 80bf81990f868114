"""Every pruning setting in one frozen :class:`PruneConfig`, checked once when it is made."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..models import MAX_STRIDE
from .models import PruneError

METRICS = ("gflops", "params")
IMPORTANCES = ("var", "l1", "l2", "lamp", "bn", "fpgm")


class PruneConfigError(PruneError):
    """A bad :class:`PruneConfig` value: ``field`` names the setting, ``problem`` says what is wrong and the fix."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class PruneConfig:
    """How to prune a detector and refit it; validated on creation (a bad value raises :class:`PruneConfigError`).

    Attributes:
        target: fraction of the ``metric`` the pruned model keeps, in (0, 1); 0.5 halves it.
        metric: ``gflops`` (counted at ``imgsz``) or ``params``.
        importance: channel ranking: ``var`` (BatchNorm-aware expected output damage, data-free), ``l1``, ``l2``
            (group weight norms), ``lamp``, ``bn`` (BatchNorm scales) or ``fpgm``.
        global_pruning: rank channels across layers (uneven widths; with ``var``, per FLOP saved) instead of
            pruning every layer by the same fraction.
        max_layer_ratio: the largest fraction of any one layer's channels removed, in (0, 1).
        iterative_steps: steps from 0 to ``max_layer_ratio`` of channels removed, re-ranking after each; pruning
            stops at the first step that reaches the target.
        round_to: every pruned width is a multiple of this (8 suits TensorRT tensor cores).
        imgsz: input size at which GFLOPs are counted (ultralytics reports 640); a multiple of 32.
        compensate: fold removed channels' mean (and variance share) into the consumers' BatchNorm.
        calib: optional images (data YAML = its train split, folder, .txt list) to refit the pruned layers on.
        calib_images: how many ``calib`` images to use.
        refit: with ``calib``, refit every convolution by least squares to reproduce the teacher's outputs
            (:mod:`detdistill.prune.reconstruct`); ``False`` re-estimates BatchNorm statistics instead.
        half: store FP16 weights in the checkpoint, like ultralytics' own.
    """

    target: float = 0.5
    metric: str = "gflops"
    importance: str = "var"
    global_pruning: bool = True
    max_layer_ratio: float = 0.6
    iterative_steps: int = 40
    round_to: int = 8
    imgsz: int = 640
    compensate: bool = True
    calib: Path | None = None
    calib_images: int = 128
    refit: bool = True
    half: bool = True

    def __post_init__(self) -> None:
        for name in ("global_pruning", "compensate", "refit", "half"):
            if not isinstance(getattr(self, name), bool):
                raise PruneConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        if self.metric not in METRICS:
            raise PruneConfigError("metric", f"must be {' or '.join(METRICS)}, got {self.metric!r}")
        self._fraction("target", f"the fraction of {self.metric} to keep, e.g. 0.5")
        self._fraction("max_layer_ratio", "the most of any one layer's channels that may go, e.g. 0.6")
        importance = str(self.importance).lower()
        if importance not in IMPORTANCES:
            raise PruneConfigError("importance", f"must be one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        object.__setattr__(self, "importance", importance)
        for name, least in (("iterative_steps", 1), ("round_to", 1), ("calib_images", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < least:
                raise PruneConfigError(name, f"must be at least {least}, got {value!r}")
        if not _is_int(self.imgsz) or self.imgsz < MAX_STRIDE or self.imgsz % MAX_STRIDE:
            raise PruneConfigError("imgsz",
                                   f"must be a positive multiple of {MAX_STRIDE} (e.g. 640), got {self.imgsz!r}")
        if self.calib is not None:
            calib = Path(self.calib)
            if not calib.exists():
                raise PruneConfigError("calib", f"source {calib} does not exist; pass a data YAML, a folder or .txt "
                                                "list of images, or leave it out")
            object.__setattr__(self, "calib", calib)

    def _fraction(self, name: str, meaning: str) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise PruneConfigError(name, f"must be between 0 and 1 ({meaning}), got {value!r}")

    def replace(self, **settings: Any) -> PruneConfig:
        """A copy with ``settings`` changed (validated again); an unknown name raises :class:`PruneConfigError`."""
        known = [f.name for f in fields(self)]
        for name in settings:
            if name not in known:
                raise PruneConfigError(name, f"is not a pruning setting; the settings are {', '.join(known)}")
        return dataclasses.replace(self, **settings)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
