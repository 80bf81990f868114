"""Find a YOLO model's Detect head and read its raw outputs, for teacher and student alike.

The Detect head of every ultralytics detection family (v5u, v8, 11, 12, 26, and the Segment/Pose/OBB
subclasses) returns, in training mode, a dict ``{"boxes", "scores", "feats"}`` (or one such dict per
branch, ``one2many``/``one2one``, for end-to-end heads); in eval mode a ``(decoded, raw)`` tuple. The
taps here locate the head by type, never by layer index, and turn any of those forms into one
:class:`HeadOutputs`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn
from ultralytics.nn.modules.head import Detect

from ..models import detect_head


@dataclass
class HeadOutputs:
    """Raw per-anchor outputs of a Detect head and the neck features it was fed.

    Attributes:
        feats: P3..Pn neck features, each (B, C_l, H_l, W_l).
        boxes: (B, 4 * reg_max, A) box regression: DFL bin logits when ``reg_max > 1``, else ltrb distances.
        scores: (B, nc, A) class logits (before sigmoid).
        reg_max: DFL bins per box side (1 for heads without DFL, e.g. YOLO26).
        strides: stride of each level in input pixels.
    """

    feats: list[torch.Tensor]
    boxes: torch.Tensor
    scores: torch.Tensor
    reg_max: int
    strides: tuple[float, ...]

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [tuple(f.shape[-2:]) for f in self.feats]

    def anchor_centers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor centres in input pixels (A, 2) as (x, y), and each anchor's stride (A,)."""
        points, strides = [], []
        device = self.scores.device
        for (h, w), s in zip(self.level_shapes, self.strides):
            ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
            xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack((gx.flatten(), gy.flatten()), -1))
            strides.append(torch.full((h * w,), float(s), device=device))
        return torch.cat(points), torch.cat(strides)

    def levels(self, keep: range) -> HeadOutputs:
        """The outputs of the pyramid levels in ``keep`` only (features, anchors and strides)."""
        counts = [h * w for h, w in self.level_shapes]
        start, stop = sum(counts[: keep.start]), sum(counts[: keep.stop])
        return HeadOutputs(
            self.feats[keep.start : keep.stop],
            self.boxes[..., start:stop],
            self.scores[..., start:stop],
            self.reg_max,
            self.strides[keep.start : keep.stop],
        )

    def float(self) -> HeadOutputs:
        """A copy with every tensor in fp32 (KD loss math runs in fp32 under AMP)."""
        return HeadOutputs(
            [f.float() for f in self.feats], self.boxes.float(), self.scores.float(), self.reg_max, self.strides
        )


def level_shift(teacher_scale: float, strides: list[float]) -> int:
    """Pyramid levels between a teacher run at ``teacher_scale`` times the student's image size and the student.

    With a scale of 2**k on a pyramid whose strides double per level, teacher level l+k has the student's
    level-l grid, covers the same image region per cell, and measures boxes in the same units (pixels over
    stride): the two are paired directly, as in Qi et al., "Multi-Scale Aligned Distillation for
    Low-Resolution Detection", CVPR 2021. 0 for any other scale (teacher maps are resampled instead).
    """
    k = round(math.log2(teacher_scale)) if teacher_scale > 1 else 0
    doubling = all(b == 2 * a for a, b in itertools.pairwise(strides))
    if k < 1 or 2**k != teacher_scale or not doubling or k >= len(strides):
        return 0
    return k


def _raw_dict(output) -> dict:
    """Pick the dense (one-to-many) raw prediction dict out of any Detect output form."""
    if isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[1], dict):
        output = output[1]  # eval mode: (decoded, raw)
    if not isinstance(output, dict):
        raise TypeError(f"unexpected Detect head output of type {type(output).__name__}")
    if "one2many" in output:  # end-to-end heads: distill the dense branch, the one the task loss trains densely
        output = output["one2many"] or output["one2one"]
    return output


def head_outputs(output, head: Detect) -> HeadOutputs:
    """Turn a model's forward output into :class:`HeadOutputs` using its Detect ``head``."""
    raw = _raw_dict(output)
    strides = tuple(float(s) for s in head.stride.tolist())
    return HeadOutputs(list(raw["feats"]), raw["boxes"], raw["scores"], int(head.reg_max), strides)


def split_levels(t: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Split a (B, C, A) per-anchor tensor into per-level (B, C, H, W) maps."""
    parts = torch.split(t, [h * w for h, w in shapes], dim=-1)
    return [p.reshape(*p.shape[:2], h, w) for p, (h, w) in zip(parts, shapes)]


def join_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`split_levels`: per-level (B, C, H, W) maps to one (B, C, A) tensor."""
    return torch.cat([m.flatten(2) for m in maps], dim=-1)


@torch.no_grad()
def probe_feature_channels(model: nn.Module, imgsz: int = 64) -> list[int]:
    """Channels of each neck feature the Detect head reads, found by one forward pass on a blank image."""
    head = detect_head(model)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        size = max(imgsz, int(max(head.stride.tolist())) * 2)
        out = model(torch.zeros(1, 3, size, size, device=device))
        return [f.shape[1] for f in head_outputs(out, head).feats]
    finally:
        model.train(was_training)
