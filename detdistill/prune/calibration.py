"""Calibration images for a pruned model: loading them as batches, and re-estimating BatchNorm statistics on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .models import PruneError, reset_head


def calibration_batches(source: str | Path, imgsz: int, limit: int = 128, batch: int = 16,
                        log: Callable[[str], None] = print) -> list:
    """Batches (torch tensors, RGB in [0, 1], letterboxed to ``imgsz``) of up to ``limit`` images from a folder,
    a .txt list, an image or a data YAML's train split; unreadable images are left out (``log`` says which)."""
    import torch  # lazy: torch, cv2 (the CLI loads prune's verbs without them)

    from ..data.image_lists import list_images
    from ..data.images import read_usable_images
    from ..runtime.letterbox import preprocess

    try:
        xs, skipped = read_usable_images(list_images(source, limit=limit), "calibration images",
                                         transform=lambda img: preprocess(img, imgsz)[0])
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise PruneError(f"calibration images: {e}") from e
    if skipped:
        log(f"warning: {skipped}")
    return [torch.from_numpy(np.concatenate(xs[i:i + batch])) for i in range(0, len(xs), batch)]


def recalibrate_bn(model: Any, batches: list) -> None:
    """Re-estimate every BatchNorm's running mean/variance on real images (forward only, no weight changes).

    Pruning leaves the consumers' statistics describing the full-width network; fresh statistics make the
    pruned model usable right away (and its mAP a fair measure of what the pruning kept).
    """
    from torch.optim.swa_utils import update_bn  # lazy: torch (the CLI loads prune's verbs without it)

    try:
        update_bn(batches, model)  # cumulative averages over all batches, in train mode, without gradients
    finally:
        reset_head(model)
