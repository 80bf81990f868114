"""The distiller: builds the recipe's losses for a teacher/student pair and computes them per batch."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.distributed as dist
from torch import nn

from .adapters import ChannelAdapter, align_spatial, fit_adapter
from ..data.class_map import ClassMap
from .recipe import Recipe
from .losses import loss_types
from .registry import LossContext
from .taps import HeadOutputs, join_levels, split_levels


def gt_center_mask(batch: dict, centers: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(B, A) 1.0 where an anchor centre lies inside a ground-truth box of its image, else 0.0.

    ``batch["bboxes"]`` are normalised xywh (ultralytics' training batch), ``centers`` (A, 2) pixels.
    """
    mask = centers.new_zeros(batch_size, centers.shape[0])
    boxes = batch.get("bboxes")
    if boxes is None or boxes.numel() == 0:
        return mask
    h, w = batch["img"].shape[-2:]
    xywh = boxes.to(centers) * centers.new_tensor([w, h, w, h])
    x1y1, x2y2 = xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2
    inside = ((centers[None] > x1y1[:, None]) & (centers[None] < x2y2[:, None])).all(-1)  # (M, A)
    mask.index_add_(0, batch["batch_idx"].long().view(-1).to(mask.device), inside.to(mask.dtype))
    return mask.clamp_(max=1.0)


def anchor_weights(region: str, teacher_conf: torch.Tensor, gt_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Per-anchor loss weights (B, A) for a recipe ``region``; None means uniform."""
    if region == "all":
        return None
    if region == "teacher":
        return teacher_conf
    if region == "gt":
        return gt_mask
    return torch.maximum(teacher_conf, gt_mask)


class Distiller(nn.Module):
    """Composes a recipe's KD losses for one teacher/student pair.

    Holds the trainable parts (channel adapters, MGD generators), which train with the student and are
    dropped from the final checkpoint. ``factor`` is the schedule's current multiplier, set each epoch.
    """

    def __init__(
        self,
        recipe: Recipe,
        student_channels: list[int],
        teacher_channels: list[int],
        student_reg_max: int,
        teacher_reg_max: int,
        class_map: ClassMap,
        level_shift: int = 0,
    ):
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError(
                f"teacher head reads {len(teacher_channels)} feature levels and the student's {len(student_channels)}: "
                "feature distillation needs the same pyramid (e.g. both P3-P5)"
            )
        # teacher level l + level_shift pairs with student level l (see taps.level_shift); unpaired levels get no KD
        self.level_shift = level_shift
        n = len(student_channels)
        self.student_levels, self.teacher_levels = range(n - level_shift), range(level_shift, n)
        student_channels = student_channels[: n - level_shift]
        teacher_channels = teacher_channels[level_shift:]
        self.recipe = recipe
        self.class_map = class_map
        self.register_buffer("class_mask", class_map.class_mask(), persistent=False)
        self.factor = 1.0
        # fitted on the first training batch (see fit_adapter); a resumed run restores them instead
        self.adapters_fitted = recipe.adapter_init != "fit"
        self.adapters = nn.ModuleDict()
        self.losses = nn.ModuleDict()
        for spec in recipe.losses:
            build = loss_types()[spec.type].build
            ctx = LossContext(spec.name, student_reg_max=student_reg_max, teacher_reg_max=teacher_reg_max)
            if spec.family == "feature":  # one loss module per pyramid level, each behind its own adapter
                self.adapters[spec.name] = nn.ModuleList(
                    ChannelAdapter(s, t) for s, t in zip(student_channels, teacher_channels)
                )
                self.losses[spec.name] = nn.ModuleList(
                    build(spec.params, replace(ctx, channels=t)) for t in teacher_channels
                )
            else:
                self.losses[spec.name] = build(spec.params, ctx)

    def _fit_adapters(self, student: HeadOutputs, teacher: HeadOutputs, shapes: list[tuple[int, int]]) -> None:
        """Least-squares initialisation of every adapter on this batch; under DDP, rank 0's fit is shared."""
        for adapters in self.adapters.values():
            for lvl, adapter in enumerate(adapters):
                fit_adapter(adapter, student.feats[lvl], align_spatial(teacher.feats[lvl], shapes[lvl]))
                if dist.is_available() and dist.is_initialized():
                    for tensor in [*adapter.parameters(), *adapter.buffers()]:
                        dist.broadcast(tensor.data, src=0)
        self.adapters_fitted = True

    def forward(self, student: HeadOutputs, teacher: HeadOutputs, batch: dict) -> dict[str, torch.Tensor]:
        """Weighted KD losses (each a per-image scalar, schedule factor applied) keyed by loss name."""
        if self.level_shift:
            student, teacher = student.levels(self.student_levels), teacher.levels(self.teacher_levels)
            if teacher.level_shapes != student.level_shapes:
                raise ValueError(
                    f"teacher levels {teacher.level_shapes} do not match the student's {student.level_shapes}: "
                    f"with teacher_scale {self.recipe.teacher_scale} the teacher must see exactly that multiple "
                    "of the student's image size"
                )
        shapes = student.level_shapes
        teacher_logits = self.class_map.map_logits(teacher.scores)
        if teacher.level_shapes != shapes:  # teacher ran at another image size: resample its maps
            teacher_logits = join_levels(
                [align_spatial(m, s) for m, s in zip(split_levels(teacher_logits, teacher.level_shapes), shapes)]
            )
        mask = self.class_mask
        conf = teacher_logits[:, mask].sigmoid().amax(dim=1) if mask.any() else teacher_logits.new_zeros(
            teacher_logits.shape[0], teacher_logits.shape[-1]
        )
        gt = None
        if self.recipe.region in {"gt", "teacher+gt"}:
            gt = gt_center_mask(batch, student.anchor_centers()[0], student.scores.shape[0])
        weights = anchor_weights(self.recipe.region, conf, gt)
        weight_maps = None if weights is None else split_levels(weights[:, None], shapes)

        if self.training and not self.adapters_fitted:
            self._fit_adapters(student, teacher, shapes)
        out: dict[str, torch.Tensor] = {}
        for spec in self.recipe.losses:
            loss = self.losses[spec.name]
            if spec.family == "feature":
                terms = []
                for lvl, (adapter, level_loss) in enumerate(zip(self.adapters[spec.name], loss)):
                    s = adapter(student.feats[lvl])
                    t = align_spatial(teacher.feats[lvl], shapes[lvl])
                    terms.append(level_loss(s, t, None if weight_maps is None else weight_maps[lvl]))
                value = torch.stack(terms).mean()
            elif spec.family == "logit":
                value = loss(student.scores, teacher_logits, weights, mask) if mask.any() else student.scores.sum() * 0
            else:
                value = loss(student.boxes, teacher.boxes, weights)
            out[spec.name] = value * spec.weight * self.factor
        return out
