"""Structured channel pruning of an ultralytics YOLO detector with torch-pruning: the loop to a budget.

The pruned model keeps ultralytics' own module classes (Conv, C2f, C3k2, SPPF, Detect, ...) with fewer
channels, so the checkpoint loads with plain ``YOLO(path)``, predicts, exports and trains, and it starts from
the teacher's weights. Layers whose width is fixed stay whole (:mod:`detdistill.prune.fixed_width`): the Detect
head's last box and class convolutions and the DFL, and the inside of attention blocks (C2PSA, PSA, C3k2 with
PSABlock: the head layout of their Attention is not something torch-pruning can follow); their output
projection ``cv2`` is pruned.

How it works:

* torch-pruning builds the dependency graph (residual adds, concats, the Detect head's branches). It cannot
  follow C2f's ``chunk`` (on this torch the split sizes are not recorded where it looks, and one half feeds two
  layers), so while pruning each C2f/C3k2 ``cv1`` is held as two half convolutions
  (:mod:`detdistill.prune.halves`); afterwards they are merged back into the block's own ``cv1`` with equal
  halves and ``block.c`` updated.
* Channels are ranked by ``var`` importance (default): the expected damage to the consumers' normalized
  outputs, computed from BatchNorm statistics without data, divided (global ranking) by the FLOPs a channel
  costs. Weight-norm criteria (l1, l2, lamp, bn scale, fpgm) are available for comparison.
* Each step (:mod:`detdistill.prune.pruning_step`) rounds every width to ``round_to`` and applies the cheapest
  groups first. Removed channels' mean contribution is folded into the consumers' BatchNorm (and their share of
  the variance taken out of ``running_var``), which matters a lot for the model as saved (eval mode).

Do not fine-tune the result with a plain ``YOLO(pruned).train()``: ultralytics rebuilds the model from its YAML
(full width) and keeps only the weights whose shapes match. Use a trainer whose ``get_model`` keeps the pruned
module (``detdistill.distill.student_trainer.StudentTrainer``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import MAX_STRIDE
from .config import PruneConfig
from .fixed_width import ignored_layers
from .halves import SplitHalves, split_blocks
from .importance import BatchNormMoments, FlopCounter, OutputVarianceImportance, make_importance
from .models import PruneError, count_gflops, count_params, output_tensors, reset_head
from .pruning_step import prune_step
from .reconstruct import KeptChannels


def prune_model(model: Any, config: PruneConfig, kept: KeptChannels | None = None,
                log: Callable[[str], None] | None = None) -> tuple[Any, list[str]]:
    """Prune ``model`` (an ultralytics DetectionModel, modified in place) until it keeps at most ``config.target``
    of its ``config.metric``. Returns ``(model, notes)`` where ``notes`` describes the layers left whole.
    ``kept`` (made by ``KeptChannels(model)`` before the call) records which original channels every convolution
    keeps. Only the pruning settings of ``config`` are used (not ``calib``, ``refit``, ``half``).

    The channel pruning ratio grows in ``iterative_steps`` equal steps up to ``max_layer_ratio``, re-ranking
    channels after each step, and stops at the first step whose measured ratio is ``<= target``.
    """
    import torch  # lazy: torch, torch_pruning (the CLI loads prune's verbs without them)
    import torch_pruning as tp

    c = config
    model.float()
    for p in model.parameters():
        p.requires_grad_(True)
    reset_head(model)

    def measure() -> float:
        return count_gflops(model, c.imgsz) if c.metric == "gflops" else float(count_params(model))

    before = measure()
    ignored, notes = ignored_layers(model)
    halves = SplitHalves(split_blocks(model))
    stride = int(max(getattr(model, "stride", torch.tensor([float(MAX_STRIDE)])).max().item(), MAX_STRIDE))
    probe_size = min(c.imgsz, 10 * stride)  # spatial sizes only scale the counts; a small probe is enough
    halves.apply(kept)
    try:
        fast = FlopCounter(model, probe_size) if c.metric == "gflops" else lambda: float(count_params(model))
        fast_before = fast()
        moments = BatchNormMoments(model, probe_size, samples=4)
        imp = make_importance(c.importance)
        if imp is None:  # var: built on the moments, ranked per FLOP saved when pruning globally by GFLOPs
            imp = OutputVarianceImportance(moments, flops=fast if c.global_pruning and c.metric == "gflops" else None)
        observers = tuple(o for o in (moments if c.compensate else None, kept) if o is not None)
        pruner = tp.pruner.MetaPruner(
            model,
            torch.zeros(1, 3, 2 * stride, 2 * stride),
            importance=imp,
            global_pruning=c.global_pruning,
            pruning_ratio=c.max_layer_ratio,
            max_pruning_ratio=c.max_layer_ratio,
            iterative_steps=c.iterative_steps,
            ignored_layers=ignored,
            round_to=None,  # prune_step rounds, keeping both halves of a C2f cv1 equal
            out_channel_groups={},
            in_channel_groups={},
            output_transform=output_tensors,
        )
        ratio = 1.0
        for step in range(c.iterative_steps):
            # the moments of the channels that stay do not change (BatchNorm affine parameters are untouched and
            # before_prune drops the removed entries), so one probe serves every step
            removed = prune_step(pruner, halves.roots(), c.round_to, reached=lambda: fast() / fast_before <= c.target,
                                 observers=observers)
            estimate = fast() / fast_before
            last = step == c.iterative_steps - 1
            ratio = measure() / before if estimate <= c.target + 0.02 or last else estimate
            if log:
                log(f"step {step + 1}/{c.iterative_steps}: removed {removed} channels, {c.metric} ratio {ratio:.3f}")
            if ratio <= c.target:
                break
    finally:
        halves.restore(kept)
    if ratio > c.target:
        raise PruneError(f"could not reach {c.target:g} of the {c.metric} (got {ratio:.3f}) with at most "
                         f"{c.max_layer_ratio:.0%} of any layer's channels removed; ask for a larger target or "
                         "allow a larger max_layer_ratio (--max-layer-ratio)")
    reset_head(model)
    return model, notes
