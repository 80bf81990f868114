"""Prune a checkpoint file: load the teacher, prune and refit a copy, check it, and save an ultralytics checkpoint."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import atomic
from ..export.outputs import checked_output
from ..models import never_trained, save_detection_checkpoint
from .calibration import calibration_batches, recalibrate_bn
from .config import PruneConfig
from .models import PruneError, count_gflops, count_params, load_detection_model, output_tensors, reset_head
from .pruner import prune_model
from .reconstruct import KeptChannels, reconstruct
from .result import LayerWidth, PruneResult


def prune_checkpoint(weights: str | Path, out: str | Path | None = None, config: PruneConfig | None = None, *,
                     log: Callable[[str], None] | None = None, **settings: Any) -> PruneResult:
    """Prune a YOLO detection checkpoint as ``config`` says and save a student that inherits the teacher's weights.

    Args:
        weights: ultralytics detection ``.pt`` (YOLOv8, YOLO11, ... with a Detect head).
        out: output ``.pt`` (default ``<weights>-pruned<target>.pt`` beside the input).
        config: the pruning settings (default: ``PruneConfig()``, half the GFLOPs at 640).
        log: called with a line per pruning step and refitted layer.
        settings: :class:`PruneConfig` fields by keyword, for callers that do not build a config; they
            override ``config``'s (``prune_checkpoint(w, out, target=0.4)``).

    With ``config.calib`` every convolution is refitted by least squares on those images to reproduce the
    teacher's outputs on the channels it kept (``config.refit``); with ``refit=False`` the BatchNorm statistics
    are re-estimated on them instead.

    The checkpoint has ultralytics' keys (``model``, ``train_args``, ``date``, ``version``, ...) plus
    ``detdistill_prune`` (source, target, metric, importance, params/GFLOPs before and after);
    ``model.yaml['pruned']`` is True. Fine-tune it with a trainer that keeps the pruned module
    (``detdistill.distill.student_trainer.StudentTrainer``), not with plain ``YOLO(out).train()``.
    """
    c = _merged(config, settings)
    weights = Path(weights)
    teacher, ckpt = load_detection_model(weights)
    try:  # never over the input, a folder, or another kind of file
        out = checked_output(weights, Path(out) if out else weights.with_name(f"{weights.stem}-pruned{c.target:g}.pt"),
                             ".pt")
        atomic.check_writable(out)
    except (ValueError, PermissionError) as e:
        raise PruneError(str(e)) from None
    # the calibration images are read before pruning, so that an unusable set fails before the work
    batches = calibration_batches(c.calib, min(c.imgsz, 640), limit=c.calib_images, log=log or print) \
        if c.calib is not None else None

    original = copy.deepcopy(teacher).float()
    model = copy.deepcopy(teacher)
    params_before, gflops_before = count_params(original), count_gflops(original, c.imgsz)
    widths_before = conv_widths(original)
    kept = KeptChannels(model)
    model, notes = prune_model(model, c, kept=kept, log=log)
    check_outputs(original, model, c.imgsz)
    if batches is not None:
        if c.refit:  # BatchNorm keeps the teacher's statistics (re-estimating them afterwards cost 5 mAP points)
            reconstruct(original, model, kept.by_name(model), batches, log=log)
        else:
            recalibrate_bn(model, batches)
    widths_after = conv_widths(model)
    layers = [LayerWidth(n, widths_before[n], widths_after[n]) for n in widths_before
              if widths_after.get(n) != widths_before[n]]

    model.yaml = {**(model.yaml or {}), "pruned": True}
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    result = PruneResult(
        path=out, source=weights, config=c, params_before=params_before, params_after=count_params(model),
        gflops_before=gflops_before, gflops_after=count_gflops(model, c.imgsz), layers=layers, ignored=notes,
        size_before=weights.stat().st_size, untrained_source=never_trained(teacher),
    )
    save_student(model, ckpt, result, out, half=c.half)
    result.size_after = out.stat().st_size
    return result


def _merged(config: PruneConfig | None, settings: dict[str, Any]) -> PruneConfig:
    if config is not None and not isinstance(config, PruneConfig):
        raise TypeError(f"config must be a PruneConfig, got {config!r}; pass other settings by keyword")
    config = config or PruneConfig()
    return config.replace(**settings) if settings else config


def conv_widths(model: Any) -> dict[str, int]:
    """Output channels of every ``nn.Conv2d``, by module name."""
    from torch import nn  # lazy: torch (the CLI loads prune's verbs without it)

    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def check_outputs(original: Any, pruned: Any, imgsz: int) -> None:
    """The pruned model's raw head outputs have the teacher's shapes (same boxes, classes, anchors)."""
    import torch  # lazy: torch (the CLI loads prune's verbs without it)

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


def save_student(model: Any, ckpt: dict, result: PruneResult, out: Path, half: bool = True) -> None:
    """Write ``model`` as an ultralytics checkpoint with the teacher's ``train_args`` and the ``detdistill_prune``
    record (:func:`detdistill.models.save_detection_checkpoint`)."""
    save_detection_checkpoint(model, ckpt, out, {"detdistill_prune": result.to_dict()}, half=half)
