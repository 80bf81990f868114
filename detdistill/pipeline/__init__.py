"""The one-command shrink pipeline: data, prune, distill, export, quantize, build, measure, report.

``run_pipeline(recipe)`` runs a recipe (what ``detdistill run`` does) and returns its ``report.md``;
``check_pipeline(recipe)`` checks it as ``detdistill run --check`` does. Both are imported on first use: the
runner pulls numpy and OpenCV, which ``import detdistill.pipeline`` (e.g. for its config) does not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import PipelineConfig, load_pipeline
    from .runner import check_pipeline, run_pipeline
    from .schema import PipelineError

_EXPORTS = {"run_pipeline": "runner", "check_pipeline": "runner", "load_pipeline": "config",
            "PipelineConfig": "config", "PipelineError": "schema"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public names, each imported from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
