"""Adapters that bring student neck features to the teacher's channels and spatial size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelAdapter(nn.Sequential):
    """1x1 convolution + BatchNorm mapping student channels to teacher channels.

    A learnable connector as in FitNets (Romero et al., ICLR 2015) and mmrazor's ConvModule connector;
    used even when channel counts match so the student's own features are not forced to equal the
    teacher's, only linearly predictable from them.
    """

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__(
            nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(teacher_channels),
        )


def align_spatial(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (B, C, H, W) map to ``size`` (teacher run at another image size); no-op when equal."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
