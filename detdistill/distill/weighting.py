"""Weighted averaging shared by the KD losses."""

from __future__ import annotations

import torch


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values``, or their ``weight``-weighted mean (same shape, weights >= 0) when given."""
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp(min=1e-6)
