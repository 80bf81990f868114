"""Structured channel pruning of YOLO detectors (torch-pruning): a student that inherits the teacher's weights.

Build a :class:`PruneConfig` (every setting, checked once) and pass it with the model or checkpoint:
``prune_checkpoint("teacher.pt", "half.pt", PruneConfig(target=0.5, calib="data.yaml"))``.
"""

from .calibration import calibration_batches, recalibrate_bn
from .checkpoint import prune_checkpoint
from .config import IMPORTANCES, METRICS, PruneConfig, PruneConfigError
from .models import PruneError, count_gflops, count_params, load_detection_model
from .pruner import prune_model
from .result import LayerWidth, PruneResult

__all__ = [
    "IMPORTANCES",
    "METRICS",
    "LayerWidth",
    "PruneConfig",
    "PruneConfigError",
    "PruneError",
    "PruneResult",
    "calibration_batches",
    "count_gflops",
    "count_params",
    "load_detection_model",
    "prune_checkpoint",
    "prune_model",
    "recalibrate_bn",
]
