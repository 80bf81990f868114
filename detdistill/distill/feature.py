"""Feature-imitation losses on neck features (student features already passed through an adapter).

Every loss takes ``student`` and ``teacher`` of shape (B, C, H, W) and an optional per-location weight
map (B, 1, H, W) in [0, 1] (e.g. teacher confidence), and returns a scalar averaged per image. All are
zero when student equals teacher, and no gradient reaches the teacher (it is detached here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_loss
from .weighting import weighted_mean


def standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-6) -> torch.Tensor:
    """Zero-mean, unit-variance normalisation over ``dims``."""
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + eps)


class FeatureImitationL2(nn.Module):
    """Score-weighted (fine-grained) feature imitation.

    Wang et al., "Distilling Object Detectors with Fine-grained Feature Imitation", CVPR 2019: an L2
    between adapted student and teacher features, restricted to locations near objects. Here the
    location weight is soft (the teacher's class confidence and/or GT centres), and features can be
    standardised per channel first, since plain L2 on raw features has hurt YOLO students:

        L = sum_{hw} w_hw * ||s_hw - t_hw||^2 / (C * sum_{hw} w_hw)
    """

    def __init__(self, normalize: bool = True):
        super().__init__()
        self.normalize = normalize

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        teacher = teacher.detach()
        if self.normalize:
            student, teacher = standardize(student, (0, 2, 3)), standardize(teacher, (0, 2, 3))
        per_location = (student - teacher).pow(2).mean(dim=1, keepdim=True)
        return weighted_mean(per_location, weight)


class ChannelWiseDistillation(nn.Module):
    """Channel-wise distillation (CWD).

    Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021. Each channel is
    turned into a distribution over its H*W locations with a temperature tau, and the student matches
    the teacher's by KL divergence:

        L = tau^2 / (B * C) * sum_{b,c} KL( softmax(t_bc / tau) || softmax(s_bc / tau) )

    ``weight`` is ignored: the softmax over locations already focuses on each channel's salient regions.
    """

    def __init__(self, tau: float = 1.0):
        super().__init__()
        self.tau = tau

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        b, c = student.shape[:2]
        s = student.reshape(b * c, -1) / self.tau
        t = teacher.detach().reshape(b * c, -1) / self.tau
        kl = F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), reduction="sum", log_target=True)
        return kl * self.tau**2 / (b * c)


class PearsonDistillation(nn.Module):
    """PKD: feature imitation with Pearson correlation.

    Cao et al., "PKD: General Distillation Framework for Object Detectors via Pearson Correlation
    Coefficient", NeurIPS 2022. Both features are standardised per channel (over batch and locations),
    after which the MSE equals 1 - Pearson correlation, insensitive to the teacher's magnitudes:

        L = 1/2 * mean( (z(s) - z(t))^2 ),  z(x) = (x - mean_c) / std_c
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        s = standardize(student, (0, 2, 3))
        t = standardize(teacher.detach(), (0, 2, 3))
        return 0.5 * weighted_mean((s - t).pow(2).mean(dim=1, keepdim=True), weight)


class MaskedGenerativeDistillation(nn.Module):
    """MGD: masked generative distillation.

    Yang et al., "Masked Generative Distillation", ECCV 2022. Random locations of the adapted student
    feature are zeroed (ratio ``mask_ratio``), and a small generator (3x3 conv, ReLU, 3x3 conv) must
    regenerate the teacher's full feature from what remains:

        L = mean( (G(s * M) - t)^2 ),  M_hw ~ Bernoulli(1 - mask_ratio)

    The generator is trained with the student and discarded afterwards. At mask_ratio 0 and with an
    identity generator the loss is zero when student equals teacher.
    """

    def __init__(self, channels: int, mask_ratio: float = 0.65):
        super().__init__()
        self.mask_ratio = mask_ratio
        self.generator = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = student.shape
        if self.training and self.mask_ratio > 0:
            keep = (torch.rand(b, 1, h, w, device=student.device) >= self.mask_ratio).to(student.dtype)
            student = student * keep
        generated = self.generator(student)
        return weighted_mean((generated - teacher.detach()).pow(2).mean(dim=1, keepdim=True), weight)


def _mask_ratio_ok(params: dict) -> str | None:
    return None if 0 <= params["mask_ratio"] < 1 else f"mask_ratio: must be in [0, 1), got {params['mask_ratio']}"


register_loss("l2", "feature", {"normalize": True}, lambda p, ctx: FeatureImitationL2(p["normalize"]))
register_loss("cwd", "feature", {"tau": 1.0}, lambda p, ctx: ChannelWiseDistillation(p["tau"]), positive=("tau",))
register_loss("pkd", "feature", {}, lambda p, ctx: PearsonDistillation())
register_loss("mgd", "feature", {"mask_ratio": 0.65}, lambda p, ctx: MaskedGenerativeDistillation(ctx.channels, p["mask_ratio"]),
              check=_mask_ratio_ok)
