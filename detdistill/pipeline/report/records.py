"""What the report is made of: every measured artifact, the training runs and the stages of one pipeline run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...export.robustness import Robustness
from ..artifacts import Artifact


# a quantization-aware export keeps its weights in float beside their learned scales (as ModelOpt exports them)
QAD_ONNX_NOTE = "weights stored in float with their INT8 scales: a TensorRT engine built from it holds them in int8"


@dataclass
class ArtifactResult:
    """One measured artifact (a checkpoint, an ONNX file or an engine) and its numbers."""

    artifact: Artifact
    size_mb: float
    params: int | None  # None where not measurable
    gflops: float | None  # at the artifact's input size
    map50_95: float | None
    map50: float | None
    latency_ms: dict[str, float] = field(default_factory=dict)  # median ms per stage
    backend: str = ""  # e.g. "onnxruntime CPU", "tensorrt", "pytorch"
    note: str = ""  # default: what the numbers alone would mislead about (QAD_ONNX_NOTE)
    robustness: Robustness | None = None  # mAP50-95 under image corruptions (measure.corrupt)

    def __post_init__(self) -> None:
        if not self.note and self.artifact.method == "qad" and self.artifact.format == "onnx":
            self.note = QAD_ONNX_NOTE

    @property
    def name(self) -> str:
        return self.artifact.label

    @property
    def kind(self) -> str:
        return self.artifact.format

    @property
    def imgsz(self) -> int:
        return self.artifact.imgsz


@dataclass
class TrainingRun:
    """One training run whose ultralytics ``results.csv`` becomes curves and a summary row."""

    name: str
    results_csv: Path


@dataclass
class PipelineReport:
    """Everything the pipeline measured, as handed to :func:`detdistill.pipeline.report.write_report`."""

    title: str
    config_text: str  # the recipe YAML as run
    machine: str
    imgsz: int
    data: str  # dataset yaml path
    artifacts: list[ArtifactResult]
    training: list[TrainingRun]
    stages: list[tuple[str, str, float]]  # (stage name, "ran"|"cached"|"skipped: reason", seconds)
    notes: list[str]
    eval_images: int | None = None  # the images every mAP was measured on (measure.eval_limit may cap them)
    eval_total: int | None = None  # the images of that split
    eval_split: str = "val"

    @property
    def teacher(self) -> ArtifactResult | None:
        """The first teacher artifact: the reference of the relative columns."""
        return next((a for a in self.artifacts if a.artifact.is_teacher), None)
