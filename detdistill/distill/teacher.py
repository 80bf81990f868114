"""Load a teacher checkpoint for distillation (frozen, eval mode, fused, with clear errors), and choose how its
forward pass runs on a CPU: in bf16 where the CPU has it natively, in a thread of its own on a spare core."""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..models import CheckpointError, detect_head, is_int8_finetuned, load_detection_checkpoint, never_trained
from ..registry.weights import WeightsError, resolve_weights
from ..file_checks import require_present


class TeacherError(ValueError):
    """The teacher file is missing, unreadable or not a YOLO detection model."""


class Int8TeacherError(TeacherError):
    """A teacher checkpoint that was fine-tuned with INT8 fake quantization (a teacher supervises in float)."""


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # saved from DDP / DataParallel
    student = getattr(model, "student_model", None)  # a distillation run's checkpoint: its student is the model
    return student if isinstance(student, nn.Module) else model


def teacher_path(path: str | Path) -> Path:
    """The checkpoint file of a teacher given as a path or as a name from the weights registry (``yolov8s``)."""
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
    path = teacher_path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        raise TeacherError(f"teacher {str(path)!r} is a model config, with no trained weights to teach: pass a trained "
                           "ultralytics checkpoint (.pt, e.g. --teacher runs/detect/train/weights/best.pt) or a "
                           "registry name (`detdistill weights list`)")
    try:
        require_present(path, "teacher", "Pass a trained ultralytics checkpoint (.pt), e.g. --teacher "
                        "runs/detect/train/weights/best.pt, or a registry name (`detdistill weights list`).")
    except FileNotFoundError as e:
        raise TeacherError(str(e)) from None
    try:
        model, ckpt = load_detection_checkpoint(path, role="teacher", tasks=("detect", "segment", "pose", "obb"))
    except CheckpointError as e:
        raise TeacherError(str(e)) from e
    if is_int8_finetuned(ckpt):
        raise Int8TeacherError(f"teacher {path} is an INT8 fine-tuned checkpoint (fake quantization): a teacher "
                               "supervises in float; pass the float checkpoint it was fine-tuned from as the teacher "
                               "(--teacher), which is also what `train --int8` without --teacher takes from a float "
                               "student")
    model = _unwrap(model)
    if never_trained(model):
        raise TeacherError(f"teacher {path} holds untrained weights (every BatchNorm layer keeps its initial "
                           "statistics, as in a model built from its YAML and never trained): it has nothing to "
                           "teach; pass a trained checkpoint, e.g. --teacher runs/detect/train/weights/best.pt")
    head = detect_head(model)
    if fuse and getattr(head, "one2one_cv2", None) is None and hasattr(model, "fuse"):
        model = model.fuse(verbose=False)
    model = model.float().eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


TEACHER_BF16_ENV = "DETDISTILL_TEACHER_BF16"


def _env_choice(name: str, default: Callable[[], bool]) -> bool:
    """An on/off switch from environment variable ``name`` ("0", "false", "no" mean off); ``default()`` when unset."""
    value = os.environ.get(name, "").strip().lower()
    return value not in {"0", "false", "no"} if value else default()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where oneDNN runs bf16 convolutions
    faster than fp32; elsewhere bf16 is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def teacher_autocast(device: torch.device):
    """The precision context of the teacher's forward pass.

    On a CPU with native bfloat16 the teacher runs under bf16 autocast (twice as fast for a YOLOv8n;
    its outputs are soft targets, cast back to fp32 before any KD math). On CUDA the trainer's AMP already
    covers it; elsewhere it stays fp32. ``DETDISTILL_TEACHER_BF16=0`` (or ``1``) forces the choice on CPU.
    """
    if device.type != "cpu" or not _env_choice(TEACHER_BF16_ENV, cpu_has_native_bf16):
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


TEACHER_THREAD_ENV = "DETDISTILL_TEACHER_THREAD"


def spare_cpu_cores() -> int:
    """Cores this process could use beyond torch's intra-op threads (ultralytics trains on CPU with one core
    fewer than the machine has, up to 8, and loads data in the training process), shared among DDP ranks."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    ranks = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    return max(cores // ranks - torch.get_num_threads(), 0)


def teacher_runs_alongside(device: torch.device) -> bool:
    """Whether the teacher's forward pass runs in a second thread, on a spare core, while the student's forward
    pass and loss run in the training thread: on CPU when a core is spare. On CUDA the GPU is already asynchronous.
    ``DETDISTILL_TEACHER_THREAD=0`` (or ``1``) forces the choice on CPU."""
    return device.type == "cpu" and _env_choice(TEACHER_THREAD_ENV, lambda: spare_cpu_cores() > 0)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def teacher_pool() -> ThreadPoolExecutor:
    """The one-thread executor the teacher runs in (one per process: a forked child gets its own)."""
    pid = os.getpid()
    if pid not in _POOLS:
        _POOLS[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detdistill-teacher")
    return _POOLS[pid]


