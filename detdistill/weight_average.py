"""Average the weights of two fine-tunes of one student into a third checkpoint (a weight-space ensemble).

Two models fine-tuned from the same weights stay in one low-loss basin, so a point on the line between them is a
model in its own right, often better than either end: WiSE-FT interpolates a fine-tuned model with its start to keep
robustness under distribution shift (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022), model
soups average fine-tunes of one start (Wortsman et al., "Model soups", ICML 2022). Here it joins a student distilled
on clean images with the same student distilled under road augmentation (``--augment road``): measured in
docs/benchmarks.md. Models trained from different starts (e.g. from scratch under two seeds) do not average: their
weights point in unrelated directions, which :func:`average_checkpoints` measures and refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic
from .export.outputs import checked_output
from .hashing import file_sha256
from .models import class_names, is_int8_finetuned, load_detection_checkpoint, save_detection_checkpoint

# cosine similarity of the two models' convolution kernels below which they are not fine-tunes of one start:
# fine-tunes of one pruned student measured 1.000, the COCO YOLOv8n against an untrained one 0.13, two untrained 0.39
MIN_COSINE = 0.8


class AverageError(ValueError):
    """Two checkpoints that cannot be averaged (other architectures, classes or starts, INT8 fine-tuned), or a bad
    weight or output."""


@dataclass
class AverageResult:
    """What :func:`average_checkpoints` wrote, and how alike the two weight vectors were."""

    path: Path
    weight: float
    cosine: float


def average_checkpoints(first: str | Path, second: str | Path, weight: float = 0.5,
                        output: str | Path | None = None) -> AverageResult:
    """Write ``(1 - weight) * first + weight * second`` as an ultralytics checkpoint (``first``'s training settings).

    Both must be float detection checkpoints of one architecture and one class list, fine-tuned from the same
    weights (their cosine similarity is at least :data:`MIN_COSINE`). Floating-point weights and BatchNorm statistics
    are averaged, integer buffers come from ``first``. ``output`` defaults to ``<first>-avg<weight>.pt`` beside it.
    """
    import torch  # lazy: torch (the CLI starts without it)

    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise AverageError(f"weight is the share of the second checkpoint, from 0 to 1 (0.5: the midpoint), got "
                           f"{weight!r}")
    first, second = Path(first), Path(second)
    try:  # before loading: a mistyped output loses no input and no time
        out = checked_output(second, checked_output(first, Path(output) if output is not None else
                                                    first.with_name(f"{first.stem}-avg{weight:g}.pt"), ".pt"), ".pt")
        atomic.check_writable(out)
    except (ValueError, PermissionError) as e:
        raise AverageError(str(e)) from None
    (model, ckpt), (other, other_ckpt) = (load_detection_checkpoint(p, role=r) for p, r in
                                           ((first, "first checkpoint"), (second, "second checkpoint")))
    for path, c in ((first, ckpt), (second, other_ckpt)):
        if is_int8_finetuned(c):
            raise AverageError(f"{path} is INT8 fine-tuned (train --int8, or ultralytics' QAT): average the float "
                               "students, then fine-tune the average in INT8")
    a, b = model.float().state_dict(), other.float().state_dict()
    if (mismatch := _first_mismatch(a, b)) is not None:
        raise AverageError(f"{first.name} and {second.name} differ in architecture ({mismatch}): average two "
                           "fine-tunes of one student (e.g. `train --student S` without and with --augment road)")
    if class_names(model) != class_names(other):
        raise AverageError(f"{first.name} and {second.name} predict other classes ({class_names(model)[:4]}... "
                           f"against {class_names(other)[:4]}...): average two fine-tunes of one student")
    floats = [k for k, v in a.items() if v.is_floating_point()]
    kernels = [k for k in floats if a[k].ndim > 1]  # BatchNorm's ones and zeros would make any two models alike
    va = torch.cat([a[k].flatten() for k in kernels]).double()
    vb = torch.cat([b[k].flatten() for k in kernels]).double()
    cosine = float(torch.nn.functional.cosine_similarity(va, vb, dim=0))
    if cosine < MIN_COSINE:
        raise AverageError(f"{first.name} and {second.name} do not look like fine-tunes of one start (cosine "
                           f"similarity of their weights {cosine:.2f}, under {MIN_COSINE}): their average would be no "
                           "model; fine-tune both from the same student weights (a pretrained or pruned .pt)")
    model.load_state_dict({k: (1 - weight) * v + weight * b[k] if k in floats else v for k, v in a.items()})
    record = {"first": str(first), "first_sha256": file_sha256(first), "second": str(second),
              "second_sha256": file_sha256(second), "weight": weight, "cosine": round(cosine, 6)}
    save_detection_checkpoint(model, ckpt, out, {"detdistill_average": record})
    return AverageResult(out, weight, cosine)


def _first_mismatch(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first parameter or buffer that only one state dict has, or that differs in shape; ``None`` if none."""
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in a or key not in b:
            return f"{key} only in the {'first' if key in a else 'second'}"
        if a[key].shape != b[key].shape:
            return f"{key}: {tuple(a[key].shape)} against {tuple(b[key].shape)}"
    return None
