"""Attention transfer (AT) on neck features.

Zagoruyko and Komodakis, "Paying More Attention to Attention: Improving the Performance of Convolutional
Neural Networks via Attention Transfer", ICLR 2017. A feature map F (B, C, H, W) becomes a spatial
attention map by summing the p-th power of its channel activations, flattened and L2-normalised; the
student matches the teacher's map:

    Q(F)_b = vec( sum_c |F_bc|^p ),    L = 1/B * sum_b || Q(S)_b / ||Q(S)_b||_2 - Q(T)_b / ||Q(T)_b||_2 ||_2

(the paper's beta/2 factor is the recipe weight). Only where to look is transferred, not the features
themselves, so the channel counts of student and teacher need not agree; the location weight is
ignored, since the maps are already spatial. Zero when the maps are equal; no gradient reaches the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_loss


def attention_map(x: torch.Tensor, p: float) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W): the L2-normalised sum over channels of |x|^p."""
    return F.normalize(x.abs().pow(p).sum(dim=1).flatten(1), dim=1)


class AttentionTransfer(nn.Module):
    """Attention transfer between one pyramid level of student and teacher (shapes in the module doc)."""

    def __init__(self, p: float = 2.0):
        super().__init__()
        self.p = p

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        del weight  # spatial by construction
        return (attention_map(student, self.p) - attention_map(teacher.detach(), self.p)).norm(dim=1).mean()


register_loss("at", "feature", {"p": 2.0}, lambda params, ctx: AttentionTransfer(params["p"]), positive=("p",))
