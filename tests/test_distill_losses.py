"""Each KD loss on small tensors: ~zero when student equals teacher, decreasing under optimisation,
and no gradient reaching the teacher."""

from __future__ import annotations

import pytest
import torch

from detdistill.distill.attention import AttentionTransfer, attention_map
from detdistill.distill.box import DecodedBoxDistillation, LocalizationDistillation, expected_distances, ltrb_iou
from detdistill.distill.feature import (
    ChannelWiseDistillation,
    FeatureImitationL2,
    MaskedGenerativeDistillation,
    PearsonDistillation,
)
from detdistill.distill.logit import ClassScoreDistillation

torch.manual_seed(0)
B, C, H, W, NC, R = 2, 8, 6, 5, 4, 16
A = H * W


def feature_losses():
    return [FeatureImitationL2(normalize=True), FeatureImitationL2(normalize=False), ChannelWiseDistillation(2.0),
            PearsonDistillation(), AttentionTransfer(2.0)]


def _optimise(loss_fn, student: torch.Tensor, teacher: torch.Tensor, steps: int = 30, lr: float = 0.1, **kw) -> list[float]:
    student = student.clone().requires_grad_(True)
    params = [student] + [p for p in getattr(loss_fn, "parameters", lambda: [])()]
    opt = torch.optim.Adam(params, lr=lr)
    values = []
    for _ in range(steps):
        loss = loss_fn(student, teacher, **kw)
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return values


@pytest.mark.parametrize("loss_fn", feature_losses(), ids=lambda m: type(m).__name__)
def test_feature_loss_zero_at_equality_and_decreasing(loss_fn):
    teacher = torch.randn(B, C, H, W)
    weight = torch.rand(B, 1, H, W)
    assert loss_fn(teacher.clone(), teacher, weight).item() == pytest.approx(0.0, abs=1e-5)
    values = _optimise(loss_fn, torch.randn(B, C, H, W), teacher, weight=weight)
    assert values[-1] < 0.5 * values[0]


def test_attention_transfer_compares_where_not_what():
    teacher = torch.randn(B, C, H, W)
    q = attention_map(teacher, 2.0)
    assert q.shape == (B, H * W) and torch.allclose(q.norm(dim=1), torch.ones(B))
    assert torch.allclose(q, teacher.pow(2).sum(1).flatten(1) / teacher.pow(2).sum(1).flatten(1).norm(dim=1, keepdim=True))
    at = AttentionTransfer(2.0)
    shuffled = teacher[:, torch.randperm(C)] * 3.0  # same energy per location, other channels, other scale
    assert at(shuffled, teacher).item() == pytest.approx(0.0, abs=1e-5)
    moved = torch.roll(teacher, shifts=2, dims=3)  # the same features elsewhere
    assert at(moved, teacher).item() > 0.1
    assert at(torch.randn(B, 2 * C, H, W), teacher).item() > 0  # channel counts need not agree


def test_mgd_generator_learns_to_regenerate_teacher():
    loss_fn = MaskedGenerativeDistillation(C, mask_ratio=0.5)
    teacher = torch.randn(B, C, H, W)
    values = _optimise(loss_fn, teacher.clone(), teacher, steps=60, lr=0.02)
    assert values[-1] < 0.7 * values[0]
    loss_fn.eval()  # no masking at eval; with an identity generator the loss is exactly zero
    with torch.no_grad():
        g = loss_fn.generator
        for conv in (g[0], g[2]):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(C)
    positive = teacher.abs()  # ReLU between the convs passes non-negative features unchanged
    assert loss_fn(positive, positive).item() == pytest.approx(0.0, abs=1e-6)


def test_logit_kd_zero_at_equality_decreasing_and_masked():
    teacher = torch.randn(B, NC, A) * 3
    weight = torch.rand(B, A)
    loss_fn = ClassScoreDistillation(temperature=2.0)
    assert loss_fn(teacher.clone(), teacher, weight).item() == pytest.approx(0.0, abs=1e-6)
    values = _optimise(loss_fn, torch.zeros(B, NC, A), teacher, weight=weight)
    assert values[-1] < 0.3 * values[0]
    # A masked-out class carries no signal: changing only it leaves the loss unchanged.
    mask = torch.tensor([True, True, False, True])
    student = torch.randn(B, NC, A)
    other = student.clone()
    other[:, 2] += 5
    assert loss_fn(student, teacher, weight, mask).item() == pytest.approx(loss_fn(other, teacher, weight, mask).item())


def test_dense_logit_kd_also_teaches_background_anchors():
    teacher = torch.randn(B, NC, A) * 3
    weight = torch.rand(B, A)
    weight[:, 0] = 0.0  # an anchor the teacher sees as background
    student = teacher.clone()
    student[:, :, 0] += 4.0  # the student disagrees only there
    sparse, dense = ClassScoreDistillation(), ClassScoreDistillation(dense=True)
    assert sparse(student, teacher, weight).item() == pytest.approx(0.0, abs=1e-6)
    assert dense(teacher.clone(), teacher, weight).item() == pytest.approx(0.0, abs=1e-6)
    assert dense(student, teacher, weight).item() > 0.1
    # normalised by the teacher's confidence mass: doubling the weights halves the loss
    assert dense(student, teacher, 2 * weight).item() == pytest.approx(dense(student, teacher, weight).item() / 2)
    values = _optimise(dense, torch.zeros(B, NC, A), teacher, weight=weight)
    assert values[-1] < 0.3 * values[0]


def test_logit_kd_of_a_student_close_to_its_teacher_is_accurate_in_float32():
    # a YOLO head's scale: 80 classes, 8400 anchors, mostly confident background; the student a little off its
    # teacher, as in quantization-aware fine-tuning against the student's own FP32 weights
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 80, 8400, generator=generator) * 2 - 10
    student = teacher + 1e-3 * torch.randn(teacher.shape, generator=generator)
    weight = teacher.sigmoid().amax(1)
    for loss_fn in (ClassScoreDistillation(), ClassScoreDistillation(dense=True)):
        exact = loss_fn(student.double(), teacher.double(), weight.double()).item()
        value = loss_fn(student, teacher, weight).item()
        # float32 rounding leaves 0.1-1% here (the former cross-entropy-minus-entropy sum was 55% off, and negative
        # for some seeds)
        assert exact > 0 and value == pytest.approx(exact, rel=0.03), (loss_fn.dense, value, exact)
    # a teacher that sees almost nothing (an untrained one): its confidence mass (~2e-5 here) no longer divides the
    # dense loss (which was then ~0.4, from a KL sum of ~7e-6)
    faint = torch.full((1, 80, 8400), -20.0)
    assert 0 < ClassScoreDistillation(dense=True)(faint + 0.1, faint, faint.sigmoid().amax(1)).item() < 1e-4


def test_ld_zero_at_equality_and_decreasing():
    teacher = torch.randn(B, 4 * R, A)
    weight = torch.rand(B, A)
    loss_fn = LocalizationDistillation(R, temperature=10.0)
    assert loss_fn(teacher.clone(), teacher, weight).item() == pytest.approx(0.0, abs=1e-6)
    values = _optimise(loss_fn, torch.randn(B, 4 * R, A), teacher, weight=weight, lr=0.5)
    assert values[-1] < 0.3 * values[0]


@pytest.mark.parametrize("s_reg, t_reg", [(1, 1), (1, R), (R, R)])
def test_decoded_box_kd_zero_at_equality_and_decreasing(s_reg, t_reg):
    teacher = torch.rand(B, 4 * t_reg, A) * 4 if t_reg == 1 else torch.randn(B, 4 * t_reg, A)
    loss_fn = DecodedBoxDistillation(s_reg, t_reg)
    if s_reg == t_reg:
        assert loss_fn(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-5)
    student = torch.rand(B, 4 * s_reg, A) * 4 if s_reg == 1 else torch.randn(B, 4 * s_reg, A)
    values = _optimise(loss_fn, student, teacher, lr=0.1, steps=60)
    assert values[-1] < 0.5 * values[0]


def test_box_helpers():
    d = torch.tensor([[[1.0], [1.0], [1.0], [1.0]]])  # a 2x2 box around the anchor
    assert ltrb_iou(d, d).item() == pytest.approx(1.0)
    assert ltrb_iou(d, d * 2).item() == pytest.approx(0.25, abs=1e-6)
    onehot = torch.full((1, 4 * R, 1), -1e4)
    for side in range(4):
        onehot[0, side * R + 3] = 0  # all mass on bin 3
    assert torch.allclose(expected_distances(onehot, R), torch.full((1, 4, 1), 3.0))


@pytest.mark.parametrize(
    "loss_fn, shape",
    [
        (ChannelWiseDistillation(), (B, C, H, W)),
        (PearsonDistillation(), (B, C, H, W)),
        (FeatureImitationL2(), (B, C, H, W)),
        (AttentionTransfer(), (B, C, H, W)),
        (ClassScoreDistillation(2.0), (B, NC, A)),
        (LocalizationDistillation(R), (B, 4 * R, A)),
        (DecodedBoxDistillation(R, R), (B, 4 * R, A)),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, tuple) else "",
)
def test_no_gradient_reaches_teacher(loss_fn, shape):
    teacher = torch.randn(shape, requires_grad=True)
    student = torch.randn(shape, requires_grad=True)
    loss_fn(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
