"""Adapters that bring student neck features to the teacher's channels and spatial size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ridge import RidgeFit


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


@torch.no_grad()
def fit_adapter(adapter: ChannelAdapter, student: torch.Tensor, teacher: torch.Tensor, ridge: float = 1e-3) -> None:
    """Initialise ``adapter`` so that it maps ``student`` features to ``teacher``'s on this batch.

    A ridge regression per output channel over every location of the batch (as the few-sample
    recovery of pruned networks fits 1x1 convolutions by least squares: Li et al., "Few Sample
    Knowledge Distillation for Efficient Network Compression", CVPR 2020). The convolution gets the
    regression weights; the BatchNorm, which normalises them by batch statistics in training, gets the
    prediction's per-channel mean and spread back as its bias and scale, and running statistics that
    give the same output in eval mode. A randomly initialised adapter would instead feed the student
    a random projection's gradients until it has learned, which at fine-tuning learning rates takes
    longer than the run.
    """
    conv, norm = adapter[0], adapter[1]
    s = student.detach().cpu().transpose(0, 1).flatten(1).T  # (N, Cs): every location of the batch
    t = teacher.detach().cpu().transpose(0, 1).flatten(1).T  # (N, Ct)
    fit = RidgeFit(s.shape[1], t.shape[1])
    fit.add(s, t)
    weight, _, _, _ = fit.solve(torch.zeros_like(fit.xty), ridge)  # (Cs, Ct), towards 0: plain ridge
    conv.weight.copy_(weight.T[:, :, None, None].to(conv.weight))
    out = s.double() @ weight  # what the convolution now outputs, (N, Ct)
    out_mean, out_var = out.mean(0), out.var(0, unbiased=False)
    # BatchNorm computes (out - mean) / sqrt(var + eps) * weight + bias: undo its scaling, add the teacher's mean
    norm.weight.copy_((out_var + norm.eps).sqrt().to(norm.weight))
    norm.bias.copy_((fit.sy / fit.n).to(norm.bias))
    norm.running_mean.copy_(out_mean.to(norm.running_mean))
    norm.running_var.copy_(out_var.to(norm.running_var))
