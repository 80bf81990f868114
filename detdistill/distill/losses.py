"""The built-in distillation losses, registered: importing this module imports each loss module, and each
registers its loss types with :mod:`detdistill.distill.registry` on import."""

from __future__ import annotations

from . import attention, box, feature, logit  # noqa: F401  (each registers its losses on import)
from .registry import LossType, registered_losses


def loss_types() -> dict[str, LossType]:
    """Every loss type a recipe can name: the built-in ones and any registered since."""
    return registered_losses()
