"""Quantization-aware distillation (QAD): the student fine-tunes with INT8 fake quantization while the
FP32 teacher supervises it through the recipe's KD losses.

Quantization-aware training learns weights that survive INT8 rounding (Jacob et al., "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018); a full-precision
teacher's soft targets recover most of what low precision loses (Mishra and Marr, "Apprentice: Using
Knowledge Distillation Techniques To Improve Low-Precision Network Accuracy", ICLR 2018; Kim et al.,
"QKD: Quantization-aware Knowledge Distillation", 2019). With the student's own FP32 checkpoint as the
teacher, QAD is self-distillation from the float model, which is the usual QAD setting.

The fake quantization is NVIDIA ModelOpt's INT8 default (per-channel symmetric int8 weights, per-tensor
int8 activations, ranges calibrated on a few training batches and then fixed), inserted into the student
alone by ultralytics' ``prepare_qat``: the teacher and the distiller stay in float, and so do the head's
output convolutions and DFL, as in PTQ. Checkpoints carry the quantizer state under ultralytics'
``modelopt`` key, so ``YOLO(path)`` loads them where ModelOpt is installed, a run resumes with its learned
ranges, and ``detdistill export`` writes a Q/DQ ONNX that TensorRT builds as an explicitly quantized
network and ONNX Runtime runs.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from ultralytics.utils.torch_utils import is_qat, prepare_qat, restore_qat

INSTALL = "pip install 'detdistill[qad]' (or: pip install nvidia-modelopt huggingface_hub)"
# the KD recipe when the student's own FP32 checkpoint is its teacher: the INT8 student matches the float model's
# outputs, class logits (KL) and box distributions (LD); measured in docs/benchmarks.md (INT8 of a distilled student)
SELF_RECIPE = "logit-box"
CALIBRATION_BATCHES = 8  # training batches the activation ranges are calibrated on, as ultralytics' QAT does


class QADError(ValueError):
    """INT8 training cannot start: ModelOpt is missing, or the student is not one that can be trained in INT8."""


def require_modelopt() -> None:
    """Raise :class:`QADError` with the install command when NVIDIA ModelOpt is not importable."""
    try:
        # lazy: modelopt (only --int8 needs it)
        import modelopt.torch.quantization  # noqa: F401
    except ImportError as e:
        raise QADError(f"--int8 (quantization-aware distillation) needs NVIDIA ModelOpt, which is not installed "
                       f"({e.name or e}): {INSTALL}") from e


def is_fake_quantized(model: nn.Module) -> bool:
    """Whether ``model`` (or a KD wrapper's student) carries ModelOpt fake-quantization."""
    return is_qat(getattr(model, "student_model", model))


def prepare_student(trainer: Any, student: nn.Module, state: dict | None = None) -> nn.Module:
    """``student`` with INT8 fake quantization: kept where it is already quantized (a QAD checkpoint fine-tuned
    again, or a pruned student resumed: its module comes from the checkpoint as it is), restored from a
    checkpoint's ``state`` (resume), else calibrated on training batches."""
    require_modelopt()
    if is_fake_quantized(student):  # a pruned student is kept as its checkpoint loaded it, quantizers and all
        return student
    if state:
        restore_qat(student, state)
        return student
    loader = trainer.get_dataloader(trainer.data["train"], batch_size=max(trainer.batch_size, 1), rank=-1,
                                    mode="train")
    student = prepare_qat(student, loader, trainer.preprocess_batch, batches=CALIBRATION_BATCHES)
    del loader
    return student
