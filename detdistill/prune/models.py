"""Pruning's view of a detection model: its error type and raw head outputs (loading and sizes: detdistill.models)."""

from __future__ import annotations

from pathlib import Path

from ..models import (  # noqa: F401
    CheckpointError, count_gflops, count_params, is_int8_finetuned, load_detection_checkpoint, reset_head)


class PruneError(ValueError):
    """The input cannot be pruned (missing file, not a detection model, bad option)."""


def load_detection_model(weights: str | Path):
    """Load an ultralytics detection checkpoint as ``(model, ckpt)``; raise :class:`PruneError` if it is not one."""
    try:
        model, ckpt = load_detection_checkpoint(weights, role="weights")
    except CheckpointError as e:
        raise PruneError(str(e)) from e
    if is_int8_finetuned(ckpt):
        raise PruneError(f"{weights} is an INT8 fine-tuned checkpoint (fake quantization): prune the float model it "
                         "was fine-tuned from, then fine-tune the pruned student (and train it in INT8 again)")
    return model, ckpt


def output_tensors(out) -> list:
    """The raw head tensors of an eval-mode forward ((y, preds) with preds['boxes'/'scores'] ...)."""
    import torch  # lazy: torch (the CLI loads prune's verbs without it)

    preds = out[1] if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict) else out
    found = []

    def walk(x, key=None):
        if isinstance(x, dict):
            for k, v in x.items():
                if k != "feats":
                    walk(v, k)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v, key)
        elif isinstance(x, torch.Tensor):
            found.append(x)

    walk(preds)
    return found

