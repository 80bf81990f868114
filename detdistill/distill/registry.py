"""The loss registry: every KD loss type declares its family, its recipe fields with defaults, and how
to build it. A new loss is one module that calls :func:`register_loss`, plus its import in
:mod:`detdistill.distill.losses`; recipes are validated against the registry and the distiller builds from it.

Families decide which tensors a loss reads:

* ``feature``: adapted student and teacher neck features of one pyramid level, (B, C, H, W), plus an
  optional (B, 1, H, W) location weight; one module is built per level;
* ``logit``: class logits (B, C, A) of both heads, anchor weights and the mapped-class mask;
* ``box``: both heads' box outputs and anchor weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


class RecipeError(ValueError):
    """A recipe field is missing, unknown or out of range."""

FAMILIES = ("feature", "logit", "box")


@dataclass(frozen=True)
class LossContext:
    """What a builder may need besides the recipe fields."""

    name: str  # the loss's name in the recipe
    channels: int = 0  # feature family: the teacher's channels at this level
    student_reg_max: int = 1
    teacher_reg_max: int = 1


@dataclass(frozen=True)
class LossType:
    family: str
    defaults: Mapping[str, Any]
    build: Callable[[dict[str, Any], LossContext], nn.Module]
    positive: frozenset[str] = field(default_factory=frozenset)  # numeric fields that must be > 0
    check: Callable[[dict[str, Any]], str | None] | None = None  # returns "field: problem" or None


_LOSSES: dict[str, LossType] = {}


def register_loss(name: str, family: str, defaults: Mapping[str, Any],
                  build: Callable[[dict[str, Any], LossContext], nn.Module], *, positive: tuple[str, ...] = (),
                  check: Callable[[dict[str, Any]], str | None] | None = None) -> None:
    """Make loss type ``name`` available to recipes."""
    if family not in FAMILIES:
        raise ValueError(f"loss family must be one of {FAMILIES}, got {family!r}")
    if name in _LOSSES:
        raise ValueError(f"loss type {name!r} is registered twice")
    _LOSSES[name] = LossType(family, dict(defaults), build, frozenset(positive), check)


def registered_losses() -> dict[str, LossType]:
    """The loss types registered so far (:func:`detdistill.distill.losses.loss_types` registers the built-in ones)."""
    return _LOSSES
