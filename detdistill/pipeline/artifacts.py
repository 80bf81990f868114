"""What the pipeline makes: every checkpoint, ONNX file and engine as an :class:`Artifact` record.

The runner produces them, the measurement and report stages consume them. An artifact's display label
(``student, KD (INT8 ONNX, cpu)``) is derived from the record and names its stages in ``stages.json``,
so the labels below must not change: existing work folders find their finished stages by them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

Role = Literal["teacher", "student", "student_kd"]  # student: trained without KD; student_kd: distilled
Precision = Literal["fp32", "fp16", "int8"]
Format = Literal["pt", "onnx", "engine"]

ROLE_NAMES: dict[str, str] = {"teacher": "teacher", "student": "student, no KD", "student_kd": "student, KD"}
QAD_NAME = "student, QAD"  # a student_kd trained with INT8 fake quantization (method "qad")


@dataclass(frozen=True)
class Artifact:
    """One model file the pipeline made or was given.

    ``source`` is the ``.pt`` it came from (itself for a checkpoint), where parameters and GFLOPs are counted.
    ``method`` says how an INT8 model got its scales: ``ptq`` (calibrated after training) or ``qad``
    (quantization-aware distillation). ``target`` is what an INT8 ONNX was quantized for (``cpu`` or
    ``tensorrt``); an engine's target is TensorRT.
    """

    role: Role
    format: Format
    path: Path
    source: Path
    imgsz: int
    precision: Precision = "fp32"
    method: Literal["ptq", "qad"] | None = None
    target: str | None = None

    @property
    def model_name(self) -> str:
        """The model it is, e.g. ``student, KD``."""
        return QAD_NAME if self.method == "qad" else ROLE_NAMES[self.role]

    @property
    def is_teacher(self) -> bool:
        return self.role == "teacher"

    @property
    def label(self) -> str:
        """The display name of the report rows and of its stages, e.g. ``student, KD (FP16 TensorRT)``."""
        if self.format == "engine":
            kind = f"{self.precision.upper()} TensorRT"
        elif self.format == "pt":
            kind = f"{self.precision.upper()} PyTorch"
        elif self.method == "qad":
            kind = "INT8 Q/DQ ONNX"
        elif self.precision == "int8":
            kind = f"INT8 ONNX, {self.target}"
        else:
            kind = f"{self.precision.upper()} ONNX"
        return f"{self.model_name} ({kind})"

    @property
    def file_stem(self) -> str:
        """The file name its ONNX export gets, e.g. ``student-no-KD``."""
        return self.model_name.replace(", ", "-").replace(" ", "-")

    def exported(self, path: Path, **changes: object) -> Artifact:
        """The record of a file made from this one (an export, a quantized model, an engine)."""
        fmt = {".onnx": "onnx", ".engine": "engine", ".pt": "pt"}[path.suffix]
        return replace(self, path=path, format=fmt, **changes)  # type: ignore[arg-type]


def final_student(checkpoints: list[Artifact]) -> Artifact:
    """The student that INT8 and the engines are made of: the distilled one, else the one without KD."""
    floats = [c for c in checkpoints if not c.is_teacher and c.method != "qad"]
    if not floats:
        raise ValueError("no student was trained")
    return next((c for c in floats if c.role == "student_kd"), floats[-1])
