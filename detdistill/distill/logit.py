"""Logit distillation on the sigmoid class scores of a YOLO head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_loss
from .weighting import weighted_mean


def binary_kl_with_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Element-wise KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))) from logits:
    p (log sigmoid(t) - log sigmoid(s)) + (1 - p) (log sigmoid(-t) - log sigmoid(-s)), p = sigmoid(t).

    Written as differences of log-probabilities, not as cross-entropy minus entropy: those two are large and nearly
    equal for the many confident background scores, and their float32 difference, summed over every anchor and
    class, can come out negative (a student close to its teacher, as in quantization-aware fine-tuning)."""
    p = teacher_logits.sigmoid()
    return p * (F.logsigmoid(teacher_logits) - F.logsigmoid(student_logits)) + (1 - p) * (
        F.logsigmoid(-teacher_logits) - F.logsigmoid(-student_logits))


class ClassScoreDistillation(nn.Module):
    """Temperature-scaled KD on per-class sigmoid scores, weighted by the teacher's confidence.

    Hinton et al., "Distilling the Knowledge in a Neural Network", 2015, with the softmax replaced by
    YOLO's independent per-class sigmoids (as in the classification KD term of LD, Zheng et al., CVPR
    2022). For anchor a, class c and temperature T:

        L = T^2 * sum_a w_a * sum_c KL( sigmoid(t_ac / T) || sigmoid(s_ac / T) ) / sum_a w_a

    With ``dense=True`` every anchor counts with weight 1 in the sum, background included, where the
    teacher's low scores say what is not an object (the dense soft targets of Hinton et al., applied to
    all of YOLO's anchors); the sum is still divided by the teacher's confidence mass, at least 1, just as
    YOLO divides its classification BCE by the sum of its target scores, at least 1:

        L_dense = T^2 * sum_a sum_c KL(...) / max(sum_a w_a, 1)

    Shapes: logits (B, nc, A); ``class_mask`` (nc,) bool keeps only classes the teacher knows (unmapped
    classes carry no teacher signal); ``weight`` (B, A) anchor weights (teacher confidence and/or GT
    region). Zero when student equals teacher.
    """

    def __init__(self, temperature: float = 1.0, dense: bool = False):
        super().__init__()
        self.temperature = temperature
        self.dense = dense

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        weight: torch.Tensor | None = None,
        class_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = self.temperature
        kl = binary_kl_with_logits(student_logits / t, teacher_logits.detach() / t)  # (B, nc, A)
        if class_mask is not None:
            kl = kl[:, class_mask]
        per_anchor = kl.sum(dim=1)  # (B, A)
        if self.dense and weight is not None:
            return per_anchor.sum() / weight.sum().clamp(min=1.0) * t**2
        return weighted_mean(per_anchor, weight) * t**2


# dense: background anchors count too
register_loss("logit", "logit", {"temperature": 1.0, "dense": False},
              lambda p, ctx: ClassScoreDistillation(p["temperature"], p["dense"]), positive=("temperature",))
