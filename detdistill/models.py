"""YOLO model plumbing shared by distillation, pruning, export and the pipeline: loading a detection
checkpoint (one error type), finding its Detect head, its class names, and its size (parameters, GFLOPs).

torch and ultralytics are imported inside the functions: the torch-free runtime never imports this module,
and the CLI starts without them.
"""

from __future__ import annotations

import copy
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from . import atomic
from .file_checks import require_present

CHECKPOINT_FIX = "Pass a trained ultralytics detection checkpoint (.pt)."  # for a checkpoint that is not there
MAX_STRIDE = 32  # the largest stride of YOLOv5u/v8/11/26 detection models (P3-P5): input sizes are multiples of it


def is_int8_finetuned(ckpt: dict) -> bool:
    """Whether a checkpoint carries INT8 fake quantization (ultralytics' ``modelopt`` key: its QAT, detdistill's
    QAD): its weights were tuned for INT8, and it is no float model to prune or to teach with."""
    return bool(ckpt.get("modelopt"))


class CheckpointError(ValueError):
    """A file that is not a loadable ultralytics detection checkpoint (missing, truncated, another task)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file is not there."""


def detect_head(model: Any) -> Any:
    """The model's Detect head (the last Detect-derived module, any YOLO family), or a clear ``ValueError``."""
    from ultralytics.nn.modules import Detect  # lazy: ultralytics (eval and the CLI start without it)

    model = getattr(model, "module", model)  # DDP / DataParallel
    heads = [m for m in model.modules() if isinstance(m, Detect)]
    if not heads:
        raise ValueError(
            f"{type(model).__name__} has no YOLO Detect head: detdistill works with detection models "
            "(ultralytics YOLOv5u/v8/11/12/26 detect, segment, pose or obb checkpoints)."
        )
    return heads[-1]


def load_detection_checkpoint(path: str | Path, role: str = "checkpoint",
                              tasks: tuple[str, ...] = ("detect",)) -> tuple[Any, dict]:
    """Load an ultralytics detection ``.pt`` as ``(model, ckpt)`` on the CPU, unfused and unchanged on disk.

    ``role`` names the file in errors (``teacher``, ``student``, ``weights``); ``tasks`` are the ultralytics
    tasks accepted (a teacher may be a segment/pose/obb model: its Detect head teaches). Every failure is a
    :class:`CheckpointError` that names the file, the problem and the fix.
    """
    path = Path(path)
    try:
        require_present(path, role, CHECKPOINT_FIX)
    except FileNotFoundError as e:
        raise CheckpointNotFoundError(str(e)) from None
    if path.suffix.lower() != ".pt":
        raise CheckpointError(f"{role} {path} is not a .pt checkpoint; pass a trained ultralytics detection .pt "
                              "(exported formats cannot be trained, pruned or exported again)")
    from ultralytics.nn.tasks import load_checkpoint  # lazy: ultralytics (eval and the CLI start without it)

    if path.stat().st_size == 0:
        raise CheckpointError(f"{role} {path} is empty (0 bytes): an interrupted copy or save; copy it again, or "
                              "rerun the training that wrote it")
    try:
        with warnings.catch_warnings():  # ModelOpt asks for a model.to(device) that ultralytics' restore then does
            warnings.filterwarnings("ignore", message="Could not identify the device for TensorQuantizer")
            model, ckpt = load_checkpoint(str(path), device="cpu", fuse=False)
    except Exception as e:  # truncated file, not a torch file, not an ultralytics checkpoint
        raise CheckpointError(f"could not load {role} {path} as an ultralytics checkpoint: {_load_problem(e)}") from e
    task = getattr(model, "task", None) or type(model).__name__
    try:
        detect_head(model)
    except ValueError:
        task = f"{task} (no Detect head)"
    if task not in tasks:
        raise CheckpointError(f"{role} {path} is a '{task}' model; only YOLO detection models (a Detect head) "
                              "are supported")
    return model, ckpt


def trained_imgsz(ckpt: dict) -> int:
    """The square input size a checkpoint was trained at (its ``train_args``, rounded up to a multiple of the
    stride as ultralytics trains it), else 640."""
    size = (ckpt.get("train_args") or {}).get("imgsz")
    return -(-size // MAX_STRIDE) * MAX_STRIDE if isinstance(size, int) and size > 0 else 640


def save_detection_checkpoint(model: Any, ckpt: dict, out: Path, record: dict[str, Any], half: bool = True) -> None:
    """Write ``model`` as an ultralytics checkpoint that ``YOLO(path)`` loads: ``ckpt``'s training settings
    (``train_args`` without ``resume``), ultralytics' keys, nothing to resume (no optimizer, no EMA) and ``record``
    (detdistill's account of what made it, e.g. ``{"detdistill_prune": {...}}``); atomically, so that a killed run
    leaves no half-written file."""
    import torch  # lazy: torch, ultralytics (as load_detection_checkpoint)
    from ultralytics import __version__

    train_args = dict(ckpt.get("train_args") or {})
    train_args.pop("resume", None)
    saved = copy.deepcopy(model)
    if half:
        saved.half()
    if hasattr(saved, "args") and not isinstance(saved.args, dict):
        saved.args = dict(vars(saved.args)) if hasattr(saved.args, "__dict__") else dict(saved.args)
    if hasattr(saved, "criterion"):
        saved.criterion = None
    if hasattr(saved, "pt_path"):
        del saved.pt_path
    checkpoint = {"epoch": -1, "best_fitness": None, "model": saved, "ema": None, "updates": None, "optimizer": None,
                  "train_args": train_args, "date": datetime.now().astimezone().isoformat(), "version": __version__,
                  "license": "AGPL-3.0 (https://ultralytics.com/license)", "docs": "https://docs.ultralytics.com",
                  **record}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.save(out, lambda tmp: torch.save(checkpoint, str(tmp)))


def _load_problem(exc: Exception) -> str:
    """What ``load_checkpoint``'s error says about the file, and the fix, without ultralytics' advice to download
    its own models (which a user's checkpoint does not need)."""
    cause = exc.__cause__
    if cause is not None:  # ultralytics wraps torch's error (a truncated zip, an empty pickle) in its TypeError
        first = str(cause).split(". ")[0].strip()
        return (f"the file is truncated or corrupted ({type(cause).__name__}: {first}); copy it again, or rerun the "
                "training that wrote it")
    what = ("it holds other objects than an ultralytics model"
            if "outside the supported Ultralytics checkpoint format" in str(exc)
            else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}")
    return f"{what}; pass a checkpoint written by ultralytics' training (runs/detect/NAME/weights/best.pt)"


def never_trained(model: Any) -> bool:
    """Whether every BatchNorm layer of ``model`` still holds its initial running statistics (mean 0, variance 1),
    as in a model built from its YAML and saved untrained. A fused model (no BatchNorm left) is not judged."""
    from torch.nn.modules.batchnorm import _BatchNorm  # lazy: torch (as above)

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]
    return bool(norms) and all(bool((m.running_mean == 0).all() and (m.running_var == 1).all()) for m in norms)


def class_names(model: Any) -> list[str]:
    """A model's class names in id order."""
    names = getattr(model, "names", None) or {i: str(i) for i in range(detect_head(model).nc)}
    if isinstance(names, dict):
        return [str(names[i]) for i in sorted(names)]
    return [str(n) for n in names]


def reset_head(model: Any) -> None:
    """Drop the Detect head's cached anchors so that the next forward recomputes them (new size or layers)."""
    import torch  # lazy: torch (eval and the CLI start without it)

    head = detect_head(model)
    head.shape = None
    head.anchors = torch.empty(0)
    head.strides = torch.empty(0)


def count_params(model: Any) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: Any, imgsz: int) -> float:
    """GFLOPs at ``imgsz`` the way ultralytics reports them (2 x MACs), with torch-pruning as a fallback."""
    import torch  # lazy: torch, ultralytics, torch_pruning (eval and the CLI start without them)
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
