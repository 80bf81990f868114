"""Box-regression distillation: on DFL box distributions (LD) or on decoded boxes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import LossContext, RecipeError, register_loss
from .weighting import weighted_mean


class LocalizationDistillation(nn.Module):
    """LD: KL divergence between teacher and student DFL box distributions.

    Zheng et al., "Localization Distillation for Dense Object Detection", CVPR 2022. Each of the four
    box sides is a distribution over ``reg_max`` bins (DFL, Li et al. GFL, NeurIPS 2020); softened with
    temperature T the student's matches the teacher's:

        L = T^2 * sum_a w_a * 1/4 sum_side KL( softmax(t_a,side / T) || softmax(s_a,side / T) ) / sum_a w_a

    Shapes: boxes (B, 4 * reg_max, A), weight (B, A). Zero when student equals teacher.
    """

    def __init__(self, reg_max: int, temperature: float = 10.0):
        super().__init__()
        self.reg_max = reg_max
        self.temperature = temperature

    def forward(
        self, student_boxes: torch.Tensor, teacher_boxes: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, _, a = student_boxes.shape
        t = self.temperature
        s = student_boxes.view(b, 4, self.reg_max, a) / t
        tt = teacher_boxes.detach().view(b, 4, self.reg_max, a) / t
        kl = F.kl_div(F.log_softmax(s, dim=2), F.log_softmax(tt, dim=2), reduction="none", log_target=True)
        per_anchor = kl.sum(dim=2).mean(dim=1)  # (B, A)
        return weighted_mean(per_anchor, weight) * t**2


def expected_distances(boxes: torch.Tensor, reg_max: int) -> torch.Tensor:
    """ltrb distances (B, 4, A) in stride units from raw head boxes (DFL expectation when reg_max > 1)."""
    if reg_max == 1:
        return boxes
    b, _, a = boxes.shape
    bins = torch.arange(reg_max, device=boxes.device, dtype=boxes.dtype).view(1, 1, reg_max, 1)
    return (boxes.view(b, 4, reg_max, a).softmax(dim=2) * bins).sum(dim=2)


def ltrb_iou(d1: torch.Tensor, d2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of two boxes given as ltrb distances (B, 4, A) from the same anchor point."""
    d1, d2 = d1.clamp(min=0), d2.clamp(min=0)
    area1 = (d1[:, 0] + d1[:, 2]) * (d1[:, 1] + d1[:, 3])
    area2 = (d2[:, 0] + d2[:, 2]) * (d2[:, 1] + d2[:, 3])
    m = torch.minimum(d1, d2)
    inter = (m[:, 0] + m[:, 2]) * (m[:, 1] + m[:, 3])
    return inter / (area1 + area2 - inter + eps)


class DecodedBoxDistillation(nn.Module):
    """Box distillation on decoded boxes, for heads without DFL (e.g. YOLO26) or mixed heads.

    The student's box at each anchor regresses the teacher's, as in the box-mimicking terms of Chen et
    al., "Learning Efficient Object Detection Models with Knowledge Distillation", NeurIPS 2017, and the
    IoU form of the regression loss (Yu et al., UnitBox, 2016):

        L = sum_a w_a * ( l1 * |d_s - d_t|_1 / 4 + iou * (1 - IoU(d_s, d_t)) ) / sum_a w_a

    with d the ltrb distances in stride units (the DFL expectation for DFL heads). Shapes: boxes
    (B, 4 * reg_max, A), weight (B, A). Zero when student equals teacher.
    """

    def __init__(self, student_reg_max: int, teacher_reg_max: int, l1: float = 1.0, iou: float = 1.0):
        super().__init__()
        self.student_reg_max = student_reg_max
        self.teacher_reg_max = teacher_reg_max
        self.l1, self.iou = l1, iou

    def forward(
        self, student_boxes: torch.Tensor, teacher_boxes: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        ds = expected_distances(student_boxes, self.student_reg_max)
        dt = expected_distances(teacher_boxes.detach(), self.teacher_reg_max)
        per_anchor = self.l1 * (ds - dt).abs().mean(dim=1) + self.iou * (1 - ltrb_iou(ds, dt))
        return weighted_mean(per_anchor, weight)


def _dfl_pair(ctx: LossContext) -> bool:
    return ctx.student_reg_max == ctx.teacher_reg_max and ctx.student_reg_max > 1


def _build_ld(p: dict, ctx: LossContext) -> nn.Module:
    if not _dfl_pair(ctx):
        raise RecipeError(
            f"loss {ctx.name!r} (ld) needs DFL heads with the same reg_max on both sides (teacher "
            f"{ctx.teacher_reg_max}, student {ctx.student_reg_max}); use type 'box' or 'box_decoded' instead"
        )
    return LocalizationDistillation(ctx.student_reg_max, p["temperature"])


def _build_decoded(p: dict, ctx: LossContext) -> nn.Module:
    return DecodedBoxDistillation(ctx.student_reg_max, ctx.teacher_reg_max, p["l1"], p["iou"])


register_loss("ld", "box", {"temperature": 10.0}, _build_ld, positive=("temperature",))
register_loss("box_decoded", "box", {"l1": 1.0, "iou": 1.0}, _build_decoded)
# LD where both heads have DFL with one reg_max, decoded boxes otherwise
register_loss("box", "box", {"temperature": 10.0, "l1": 1.0, "iou": 1.0},
              lambda p, ctx: _build_ld(p, ctx) if _dfl_pair(ctx) else _build_decoded(p, ctx), positive=("temperature",))
