"""Structured channel pruning of an ultralytics YOLO detector with torch-pruning.

The pruned model keeps ultralytics' own module classes (Conv, C2f, C3k2, SPPF, Detect, ...) with fewer
channels, so the checkpoint loads with plain ``YOLO(path)``, predicts, exports and trains, and it starts from
the teacher's weights. Layers whose width is fixed stay whole: the Detect head's last box and class
convolutions and the DFL, and the inside of attention blocks (C2PSA, PSA, C3k2 with PSABlock: the head layout
of their Attention is not something torch-pruning can follow); their output projection ``cv2`` is pruned.

How it works:

* torch-pruning builds the dependency graph (residual adds, concats, the Detect head's branches). It cannot
  follow C2f's ``chunk`` (on this torch the split sizes are not recorded where it looks, and one half feeds two
  layers), so while pruning each C2f/C3k2 ``cv1`` is held as two half convolutions; afterwards they are merged
  back into the block's own ``cv1`` with equal halves and ``block.c`` updated.
* Channels are ranked by ``var`` importance (default): the expected damage to the consumers' normalized
  outputs, computed from BatchNorm statistics without data, divided (global ranking) by the FLOPs a channel
  costs. Weight-norm criteria (l1, l2, lamp, bn scale, fpgm) are available for comparison.
* Removed channels' mean contribution is folded into the consumers' BatchNorm (and their share of the
  variance taken out of ``running_var``), which matters a lot for the model as saved (eval mode).
* With ``calib`` images the BatchNorm statistics are re-estimated after pruning.

Do not fine-tune the result with a plain ``YOLO(pruned).train()``: ultralytics rebuilds the model from its YAML
(full width) and keeps only the weights whose shapes match. Use a trainer whose ``get_model`` keeps the pruned
module (``detdistill.distill.student_trainer.StudentTrainer``).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .. import atomic
from .halves import SplitHalves, has_attention, split_blocks
from .importance import (
    BatchNormMoments,
    FlopCounter,
    OutputVarianceImportance,
    make_importance,
)
from .models import (
    PruneError,
    count_gflops,
    count_params,
    load_detection_model,
    output_tensors,
    param_count_float,
    reset_head,
)
from .reconstruct import KeptChannels, reconstruct

METRICS = ("gflops", "params")
DEFAULT_IMPORTANCE = "var"
DEFAULT_GLOBAL = True
DEFAULT_MAX_LAYER_RATIO = 0.6


@dataclass
class LayerWidth:
    """Output channels of one pruned layer (model.<i> sub-module) before and after."""

    name: str
    before: int
    after: int


@dataclass
class PruneResult:
    """What :func:`prune_checkpoint` wrote and measured (GFLOPs at ``imgsz``, like ultralytics' model info)."""

    path: Path
    source: Path
    target: float
    metric: str
    importance: str
    global_pruning: bool
    imgsz: int
    params_before: int
    params_after: int
    gflops_before: float
    gflops_after: float
    size_before: int = 0  # file bytes
    size_after: int = 0
    layers: list[LayerWidth] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """The achieved fraction of the teacher's ``metric`` that the pruned model keeps."""
        if self.metric == "params":
            return self.params_after / self.params_before
        return self.gflops_after / self.gflops_before

    def table(self) -> list[tuple[str, str, str, str]]:
        """Rows (quantity, before, after, kept) of the before/after table."""
        mb = 1 << 20
        rows = [
            ("parameters", f"{self.params_before / 1e6:.3f} M", f"{self.params_after / 1e6:.3f} M",
             f"{self.params_after / self.params_before:.1%}"),
            (f"GFLOPs @{self.imgsz}", f"{self.gflops_before:.2f}", f"{self.gflops_after:.2f}",
             f"{self.gflops_after / self.gflops_before:.1%}"),
        ]
        if self.size_before and self.size_after:
            rows.append(("file size", f"{self.size_before / mb:.2f} MiB", f"{self.size_after / mb:.2f} MiB",
                         f"{self.size_after / self.size_before:.1%}"))
        return rows

    def summary(self) -> str:
        head = (f"pruned {self.source.name} -> {self.path} ({self.importance} importance, "
                f"{'global' if self.global_pruning else 'uniform'} ratio, target {self.target:g} of {self.metric}, "
                f"achieved {self.ratio:.3f})")
        lines = [head, f"{'':14s}{'before':>14s}{'after':>14s}{'kept':>9s}"]
        lines += [f"{q:14s}{b:>14s}{a:>14s}{k:>9s}" for q, b, a, k in self.table()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The ``detdistill_prune`` record stored in the checkpoint (plain types only)."""
        return {
            "source": str(self.source),
            "target": self.target,
            "metric": self.metric,
            "importance": self.importance,
            "global_pruning": self.global_pruning,
            "imgsz": self.imgsz,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "gflops_before": self.gflops_before,
            "gflops_after": self.gflops_after,
            "ratio": self.ratio,
            "ignored": list(self.ignored),
            "layers": {w.name: [w.before, w.after] for w in self.layers},
        }


_PRUNABLE_LAYERS = ("Conv", "C2f", "C3k2", "C3", "C3k", "C2", "SPPF", "Concat", "Upsample", "Detect", "v10Detect")


def ignored_layers(model) -> tuple[list, list[str]]:
    """Modules torch-pruning must not shrink, and a description of each choice.

    * the Detect head's last box/class convolutions (their widths are 4*reg_max and nc) and the DFL;
    * attention blocks (C2PSA, PSA, C3k2 with PSABlock) and layer types not known here: their input
      projection and inner modules keep their width; their output conv ``cv2`` (if any) is pruned.
    """
    from torch import nn

    head = model.model[-1]
    ignored, notes = [], []
    for name in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
        branch = getattr(head, name, None)
        if branch is not None:
            ignored += [seq[-1] for seq in branch]
    if isinstance(getattr(head, "dfl", None), nn.Module):
        ignored.append(head.dfl)
    notes.append(f"model.{len(model.model) - 1} Detect: final box/class convs and DFL keep their width")
    for i, layer in enumerate(model.model[:-1]):
        kind = type(layer).__name__
        if kind in _PRUNABLE_LAYERS and not has_attention(layer):
            continue
        keep = [layer.cv2] if isinstance(getattr(layer, "cv2", None), nn.Module) else []
        inner = [m for m in layer.children() if all(m is not k for k in keep)]
        if not inner:
            continue
        ignored += inner
        what = "attention block" if has_attention(layer) else "layer type not handled"
        notes.append(f"model.{i} {kind}: {what}, inner width kept" + (" (output cv2 pruned)" if keep else ""))
    return ignored, notes


# ---------------------------------------------------------------------------------------------------- pruning


def _round_keep(keep: float, channels: int, round_to: int) -> int:
    """``keep`` rounded to a multiple of ``round_to`` (at least one multiple) and at most ``channels``."""
    if round_to <= 1:
        return max(1, min(round(keep), channels))
    k = max(round_to, round(keep / round_to) * round_to)
    return min(k, channels)


def _prune_step(pruner, pairs: list[tuple], round_to: int, reached=None, observers: tuple = ()) -> int:
    """One pruning step: take torch-pruning's channel counts per group, round every width to ``round_to``,
    give both halves of a C2f ``cv1`` the same width, and drop each group's least important channels.

    Groups are pruned in order of the (normalized) importance of what they lose, cheapest first; after each
    one, ``reached()`` may end the step early (the target is met). Returns the number of channels removed.
    """
    import torch
    import torch_pruning as tp

    dg = pruner.DG
    members = {m for pair in pairs for m in pair}
    planned, root_of = {}, {}
    for group in pruner.step(interactive=True):  # ranking only; groups are rebuilt below, one at a time
        dep, idxs = group[0]
        if not dg.is_out_channel_pruning_fn(dep.handler):
            continue
        root = dep.target.module
        planned[root] = (dep.handler, len(idxs))
        for d, _ in group:  # a half of cv1 may sit in a group rooted elsewhere (residual bottlenecks)
            if d.target.module in members and dg.is_out_channel_pruning_fn(d.handler):
                root_of[d.target.module] = root
    keep = {}
    for root, (fn, n) in planned.items():
        ch = dg.get_out_channels(root)
        keep[root] = (fn, _round_keep(ch - n, ch, round_to))
    jobs, paired = [], set()
    for a, b in pairs:
        ra, rb = root_of.get(a), root_of.get(b)
        if ra is None and rb is None:
            continue
        ch = dg.get_out_channels(a)
        kept = [ch - (planned[r][1] if r is not None else 0) for r in (ra, rb)]
        k = _round_keep(sum(kept) / 2, ch, round_to)
        job = []
        for member, r in ((a, ra), (b, rb)):
            root = r if r is not None else member  # a half torch-pruning left alone this step: its own group
            job.append((root, planned[r][0] if r is not None else tp.prune_conv_out_channels, k))
            paired.add(root)
        jobs.append(job)
    jobs += [[(root, fn, k)] for root, (fn, k) in keep.items() if root not in paired]

    plans = []  # (cost, [(root, fn, drop idxs)])
    for job in jobs:
        plan, cost, n = [], 0.0, 0
        for root, fn, k in job:
            ch = dg.get_out_channels(root)
            if k >= ch:
                continue
            imp = pruner.estimate_importance(dg.get_pruning_group(root, fn, list(range(ch))))
            if imp is None:
                continue
            imp = imp.float().cpu()
            order = torch.argsort(imp)[: ch - k]
            plan.append((root, fn, sorted(order.tolist())))
            cost += float(imp[order].sum() / imp.sum().clamp_min(1e-12))
            n += ch - k
        if plan:
            plans.append((cost / max(n, 1), plan))
    plans.sort(key=lambda p: p[0])
    removed = 0
    for _, plan in plans:
        for root, fn, drop in plan:  # groups are rebuilt now: earlier prunes move concat offsets
            group = dg.get_pruning_group(root, fn, drop)
            if dg.check_pruning_group(group):
                for observer in observers:  # compensation, channel bookkeeping
                    observer.before_prune(dg, group)
                group.prune()
                removed += len(drop)
        if reached is not None and reached():
            break
    return removed


def _check_target(target: float, metric: str) -> None:
    if metric not in METRICS:
        raise PruneError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0.0 < target < 1.0:
        raise PruneError(f"target must be between 0 and 1 (the fraction of {metric} to keep), got {target}")


def prune_model(
    model,
    target: float = 0.5,
    metric: Literal["gflops", "params"] = "gflops",
    importance: str = DEFAULT_IMPORTANCE,
    imgsz: int = 640,
    round_to: int = 8,
    global_pruning: bool = DEFAULT_GLOBAL,
    iterative_steps: int = 40,
    max_layer_ratio: float = DEFAULT_MAX_LAYER_RATIO,
    compensate: bool = True,
    kept: KeptChannels | None = None,
    log=None,
):
    """Prune ``model`` (an ultralytics DetectionModel, modified in place) until it keeps at most ``target`` of its
    ``metric``. Returns ``(model, notes)`` where ``notes`` describes the layers left whole. ``kept`` (made by
    ``KeptChannels(model)`` before the call) records which original channels every convolution keeps.

    The channel pruning ratio grows in ``iterative_steps`` equal steps up to ``max_layer_ratio``, re-ranking
    channels after each step, and stops at the first step whose measured ratio is ``<= target``.
    """
    import torch
    import torch_pruning as tp

    _check_target(target, metric)
    if round_to < 1:
        raise PruneError(f"round_to must be >= 1, got {round_to}")
    imp = make_importance(importance)

    model.float()
    for p in model.parameters():
        p.requires_grad_(True)
    reset_head(model)

    def measure() -> float:
        return count_gflops(model, imgsz) if metric == "gflops" else float(count_params(model))

    before = measure()
    ignored, notes = ignored_layers(model)
    halves = SplitHalves(split_blocks(model))
    stride = int(max(getattr(model, "stride", torch.tensor([32.0])).max().item(), 32))
    example = torch.zeros(1, 3, 2 * stride, 2 * stride)
    halves.apply(kept)
    try:
        if metric == "gflops":
            fast = FlopCounter(model, min(imgsz, 10 * stride))
        else:
            fast = functools.partial(param_count_float, model)
        fast_before = fast()
        moments = BatchNormMoments(model, min(imgsz, 10 * stride), samples=4)
        if importance.lower() == "var":
            imp = OutputVarianceImportance(moments, flops=fast if global_pruning and metric == "gflops" else None)
        observers = tuple(o for o in (moments if compensate else None, kept) if o is not None)
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=imp,
            global_pruning=global_pruning,
            pruning_ratio=max_layer_ratio,
            max_pruning_ratio=max_layer_ratio,
            iterative_steps=iterative_steps,
            ignored_layers=ignored,
            round_to=None,
            out_channel_groups={},
            in_channel_groups={},
            output_transform=output_tensors,
        )
        ratio = 1.0
        for step in range(iterative_steps):
            # the moments of the channels that stay do not change (BatchNorm affine parameters are untouched and
            # before_prune drops the removed entries), so one probe serves every step
            removed = _prune_step(pruner, halves.roots(), round_to, reached=lambda: fast() / fast_before <= target,
                                  observers=observers)
            estimate = fast() / fast_before
            ratio = measure() / before if estimate <= target + 0.02 or step == iterative_steps - 1 else estimate
            if log:
                log(f"step {step + 1}/{iterative_steps}: removed {removed} channels, {metric} ratio {ratio:.3f}")
            if ratio <= target:
                break
    finally:
        halves.restore(kept)
    if ratio > target:
        raise PruneError(f"could not reach {target:g} of the {metric} (got {ratio:.3f}) with at most "
                         f"{max_layer_ratio:.0%} of any layer's channels removed; ask for a larger target or "
                         "allow a larger max_layer_ratio (--max-layer-ratio)")
    reset_head(model)
    return model, notes


def calibration_batches(source: str | Path, imgsz: int, limit: int = 128, batch: int = 16):
    """Batches (torch tensors, RGB in [0, 1], letterboxed to ``imgsz``) of up to ``limit`` images from a folder,
    a .txt list, an image or a data YAML's train split."""
    import numpy as np
    import torch

    from ..data.image_lists import list_images
    from ..data.images import read_bgr
    from ..runtime.letterbox import preprocess

    try:
        files = list_images(source, limit=limit)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise PruneError(f"calibration images: {e}") from e
    xs = [preprocess(read_bgr(f), imgsz)[0] for f in files]
    return [torch.from_numpy(np.concatenate(xs[i:i + batch])) for i in range(0, len(xs), batch)]


def recalibrate_bn(model, batches) -> None:
    """Re-estimate every BatchNorm's running mean/variance on real images (forward only, no weight changes).

    Pruning leaves the consumers' statistics describing the full-width network; fresh statistics make the
    pruned model usable right away (and its mAP a fair measure of what the pruning kept).
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    was = model.training
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
        model.train()
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was)
        reset_head(model)


def _widths(model) -> dict[str, int]:
    from torch import nn

    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _check_outputs(original, pruned, imgsz: int) -> None:
    """The pruned model's raw head outputs have the teacher's shapes (same boxes, classes, anchors)."""
    import torch

    s = max(64, min(imgsz, 128))
    x = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        a = output_tensors(original.eval()(x))
        b = output_tensors(pruned.eval()(x))
    reset_head(original)
    reset_head(pruned)
    if [t.shape for t in a] != [t.shape for t in b]:
        raise RuntimeError(f"internal error: pruning changed the head outputs {[tuple(t.shape) for t in a]} -> "
                           f"{[tuple(t.shape) for t in b]}")


def prune_checkpoint(
    weights: str | Path,
    out: str | Path | None = None,
    target: float = 0.5,
    metric: Literal["gflops", "params"] = "gflops",
    importance: str = DEFAULT_IMPORTANCE,
    imgsz: int = 640,
    round_to: int = 8,
    global_pruning: bool = DEFAULT_GLOBAL,
    iterative_steps: int = 40,
    max_layer_ratio: float = DEFAULT_MAX_LAYER_RATIO,
    compensate: bool = True,
    calib: str | Path | None = None,
    calib_images: int = 128,
    refit: bool = True,
    half: bool = True,
    log=None,
) -> PruneResult:
    """Prune a YOLO detection checkpoint to ``target`` of its GFLOPs (or parameters) and save a student
    checkpoint that inherits the teacher's weights.

    Args:
        weights: ultralytics detection ``.pt`` (YOLOv8, YOLO11, ... with a Detect head).
        out: output ``.pt`` (default ``<weights>-pruned<target>.pt`` beside the input).
        target: fraction of the ``metric`` the pruned model keeps, in (0, 1); 0.5 halves it.
        metric: ``gflops`` (measured at ``imgsz``) or ``params``.
        importance: channel ranking: ``var`` (default; BatchNorm-aware expected output damage, data-free),
            ``l1``, ``l2`` (group weight norms), ``lamp``, ``bn`` (BatchNorm scales) or ``fpgm``.
        imgsz: input size for counting GFLOPs (ultralytics reports 640).
        round_to: every pruned width is a multiple of this (8 suits TensorRT tensor cores).
        global_pruning: rank channels across layers (uneven widths; default) instead of pruning every layer by
            the same fraction. With ``var`` the global ranking is per FLOP saved.
        iterative_steps: steps from 0 to ``max_layer_ratio`` of channels removed; pruning stops at the first
            step that reaches the target. max_layer_ratio: the largest fraction of any layer's channels removed.
        compensate: fold removed channels' mean (and variance share) into the consumers' BatchNorm.
        calib: optional images (data YAML, folder, .txt; calib_images of them are used). With them every
            convolution is refitted by least squares to reproduce the teacher's outputs on the channels it kept
            (``refit``, see :mod:`detdistill.prune.reconstruct`); with ``refit=False`` the BatchNorm statistics
            are re-estimated on them instead.
        half: store FP16 weights, like ultralytics' own checkpoints.

    The checkpoint has ultralytics' keys (``model``, ``train_args``, ``date``, ``version``, ...) plus
    ``detdistill_prune`` (source, target, metric, importance, params/GFLOPs before and after);
    ``model.yaml['pruned']`` is True. Fine-tune it with a trainer that keeps the pruned module
    (``detdistill.distill.student_trainer.StudentTrainer``), not with plain ``YOLO(out).train()``.
    """
    import torch
    from ultralytics import __version__

    weights = Path(weights)
    teacher, ckpt = load_detection_model(weights)
    _check_target(target, metric)
    out = Path(out) if out else weights.with_name(f"{weights.stem}-pruned{target:g}.pt")
    if calib is not None and not Path(calib).exists():
        raise PruneError(f"calibration source {calib} does not exist; pass a data YAML or a folder of images")
    if out.resolve() == weights.resolve():
        raise PruneError(f"output {out} would overwrite the input; pass another -o path")

    original = copy.deepcopy(teacher).float()
    model = copy.deepcopy(teacher)
    params_before, gflops_before = count_params(original), count_gflops(original, imgsz)
    widths_before = _widths(original)
    kept = KeptChannels(model)
    model, notes = prune_model(model, target=target, metric=metric, importance=importance, imgsz=imgsz,
                               round_to=round_to, global_pruning=global_pruning, iterative_steps=iterative_steps,
                               max_layer_ratio=max_layer_ratio, compensate=compensate, kept=kept, log=log)
    _check_outputs(original, model, imgsz)
    if calib is not None:
        batches = calibration_batches(calib, min(imgsz, 640), limit=calib_images)
        if refit:  # BatchNorm keeps the teacher's statistics (re-estimating them afterwards cost 5 mAP points)
            reconstruct(original, model, kept.by_name(model), batches, log=log)
        else:
            recalibrate_bn(model, batches)
    widths_after = _widths(model)
    layers = [LayerWidth(n, widths_before[n], widths_after[n]) for n in widths_before
              if widths_after.get(n) != widths_before[n]]

    model.yaml = {**(model.yaml or {}), "pruned": True}
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    result = PruneResult(
        path=out, source=weights, target=target, metric=metric, importance=importance.lower(),
        global_pruning=global_pruning, imgsz=imgsz, params_before=params_before, params_after=count_params(model),
        gflops_before=gflops_before, gflops_after=count_gflops(model, imgsz), layers=layers, ignored=notes,
        size_before=weights.stat().st_size,
    )
    train_args = dict(ckpt.get("train_args") or {})
    train_args.pop("resume", None)
    saved = copy.deepcopy(model)
    if half:
        saved.half()
    if hasattr(saved, "args") and not isinstance(saved.args, dict):
        saved.args = dict(vars(saved.args)) if hasattr(saved.args, "__dict__") else dict(saved.args)
    for attr in ("criterion", "pt_path"):
        if hasattr(saved, attr):
            setattr(saved, attr, None) if attr == "criterion" else delattr(saved, attr)
    record = {
        "epoch": -1,
        "best_fitness": None,
        "model": saved,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": train_args,
        "date": datetime.now().astimezone().isoformat(),
        "version": __version__,
        "license": "AGPL-3.0 (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "detdistill_prune": result.to_dict(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.save(out, lambda tmp: torch.save(record, str(tmp)))  # a killed run leaves no half-written student
    result.size_after = out.stat().st_size
    return result

