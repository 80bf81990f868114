"""Loading and measuring ultralytics detection models for pruning (checkpoints, parameter and GFLOPs counts)."""

from __future__ import annotations

from pathlib import Path


class PruneError(ValueError):
    """The input cannot be pruned (missing file, not a detection model, bad option)."""


def load_detection_model(weights: str | Path):
    """Load an ultralytics detection checkpoint as ``(model, ckpt)``; raise :class:`PruneError` if it is not one."""
    weights = Path(weights)
    if not weights.is_file():
        raise PruneError(f"weights {weights} do not exist; pass a trained ultralytics detection checkpoint (.pt)")
    if weights.suffix.lower() != ".pt":
        raise PruneError(f"{weights} is not a .pt checkpoint; pass a trained ultralytics detection .pt")
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import load_checkpoint

    try:
        model, ckpt = load_checkpoint(str(weights), device="cpu", fuse=False)
    except Exception as e:  # not a torch file, not an ultralytics checkpoint
        raise PruneError(f"could not load {weights} as an ultralytics checkpoint: {e}") from e
    head = model.model[-1] if hasattr(model, "model") and len(model.model) else None
    if getattr(model, "task", None) != "detect" or type(head).__name__ not in ("Detect", "v10Detect") \
            or not isinstance(head, Detect):
        raise PruneError(f"{weights} is a '{getattr(model, 'task', type(model).__name__)}' model; "
                         "only YOLO detection models (a Detect head) can be pruned")
    return model, ckpt


def reset_head(model) -> None:
    """Drop the Detect head's cached anchors so the next forward recomputes them for the new model."""
    import torch

    head = model.model[-1]
    head.shape = None
    head.anchors = torch.empty(0)
    head.strides = torch.empty(0)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def param_count_float(model) -> float:
    return float(count_params(model))


def count_gflops(model, imgsz: int) -> float:
    """GFLOPs at ``imgsz`` the way ultralytics reports them (2 x MACs), with torch-pruning as a fallback."""
    import torch
    from ultralytics.utils.torch_utils import get_flops

    was_training = model.training
    g = get_flops(model, imgsz)
    if not g:
        import torch_pruning as tp

        model.eval()
        macs, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, 3, imgsz, imgsz))
        g = 2 * macs / 1e9
    reset_head(model)
    model.train(was_training)
    return float(g)


def output_tensors(out) -> list:
    """The raw head tensors of an eval-mode forward ((y, preds) with preds['boxes'/'scores'] ...)."""
    import torch

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

