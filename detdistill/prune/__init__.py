"""Structured channel pruning of YOLO detectors (torch-pruning): a student that inherits the teacher's weights."""

from .importance import IMPORTANCES
from .models import PruneError, count_gflops, count_params, load_detection_model
from .pruner import METRICS, LayerWidth, PruneResult, prune_checkpoint, prune_model

__all__ = [
    "IMPORTANCES",
    "METRICS",
    "LayerWidth",
    "PruneError",
    "PruneResult",
    "count_gflops",
    "count_params",
    "load_detection_model",
    "prune_checkpoint",
    "prune_model",
]
