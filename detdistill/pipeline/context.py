"""What every stage runner of one pipeline run shares: the config, the work folder, the stage cache, the log and
the report's notes."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.cpu import cpu_model, instruction_set
from .config import PipelineConfig
from .stages import StageCache

Log = Callable[[str], None]


@dataclass
class StageContext:
    """One pipeline run's shared state, handed to the stage runners."""

    cfg: PipelineConfig
    work: Path
    stages: StageCache
    log: Log = print
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Add a note to the report (once)."""
        if text not in self.notes:
            self.notes.append(text)

    def train_args(self, run_dir: Path, extra: dict | None = None) -> dict[str, Any]:
        """ultralytics train arguments of a run in ``run_dir``: the recipe's ``train`` over the top-level settings,
        ``extra`` over both. They are part of the training stages' keys: keep their form."""
        args = {"imgsz": self.cfg.imgsz, "seed": self.cfg.seed, "plots": False, "exist_ok": True,
                "project": str(run_dir.parent), "name": run_dir.name}
        if self.cfg.device is not None:
            args["device"] = self.cfg.device
        return {**args, **self.cfg.train, **(extra or {})}


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, None where there is none."""
    try:
        import tensorrt  # lazy: tensorrt (optional: reported where installed)

        return tensorrt.__version__
    except ImportError:
        return None


def describe_machine(gpu_name: str | None) -> str:
    """CPU, GPU and runtime versions, for the report."""
    parts = [f"{cpu_model()} ({platform.machine()}, {instruction_set()}), {os.cpu_count()} CPU cores",
             gpu_name or "no GPU"]
    try:
        import onnxruntime  # lazy: onnxruntime (optional: reported where installed)

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    trt = tensorrt_version()
    parts.append(f"TensorRT {trt}" if trt else "no TensorRT")
    return "; ".join(parts)
