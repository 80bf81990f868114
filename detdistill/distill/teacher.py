"""Load a teacher checkpoint for distillation: frozen, eval mode, fused, with clear errors."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .taps import detect_head


class TeacherError(ValueError):
    """The teacher file is missing, unreadable or not a YOLO detection model."""


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # saved from DDP / DataParallel
    student = getattr(model, "student_model", None)  # a distillation run's checkpoint: its student is the model
    return student if isinstance(student, nn.Module) else model


def teacher_path(path: str | Path) -> Path:
    """The checkpoint file of a teacher given as a path or as a name from the weights registry (``yolov8s``)."""
    from ..weights import WeightsError, resolve_weights

    if Path(path).is_file() or Path(path).suffix not in {"", ".pt"}:
        return Path(path)
    try:
        return resolve_weights(path)
    except WeightsError as e:
        raise TeacherError(str(e)) from e


def load_teacher(path: str | Path, device: torch.device | str = "cpu", fuse: bool = True) -> nn.Module:
    """Load a teacher from an ultralytics ``.pt`` checkpoint.

    The model is returned in fp32, eval mode, with every parameter frozen, and Conv+BN fused for speed
    (except end-to-end heads, whose one-to-many branch fusion would remove).
    """
    from ultralytics.nn.tasks import load_checkpoint

    path = teacher_path(path)
    if not path.is_file():
        raise TeacherError(
            f"teacher file {str(path)!r} does not exist: pass a trained ultralytics checkpoint (.pt), "
            "e.g. --teacher runs/detect/train/weights/best.pt"
        )
    if path.suffix != ".pt":
        raise TeacherError(f"teacher {str(path)!r} is not a PyTorch checkpoint: export-only formats cannot teach; give the .pt")
    try:
        model, _ = load_checkpoint(path, device="cpu")
    except Exception as e:  # corrupt file, wrong pickle, not an ultralytics checkpoint
        raise TeacherError(f"could not load teacher {str(path)!r} as an ultralytics checkpoint: {e}") from e
    model = _unwrap(model)
    try:
        head = detect_head(model)
    except ValueError as e:
        raise TeacherError(f"teacher {str(path)!r}: {e}") from e
    if fuse and getattr(head, "one2one_cv2", None) is None and hasattr(model, "fuse"):
        model = model.fuse(verbose=False)
    model = model.float().eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def class_names(model: nn.Module) -> list[str]:
    """A model's class names in id order."""
    names = getattr(model, "names", None) or {i: str(i) for i in range(detect_head(model).nc)}
    if isinstance(names, dict):
        return [str(names[i]) for i in sorted(names)]
    return [str(n) for n in names]
