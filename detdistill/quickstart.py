"""The end-to-end quickstart: the pipeline recipe ``pipeline/recipes/quickstart.yaml``, offline.

It generates a shapes dataset, trains a YOLOv8n teacher on it, trains a YOLOv8n at half width without and
with distillation, exports ONNX and an INT8 ONNX, measures every artifact through ``detdistill.runtime``,
runs the demo headless on a video, and writes report.md/report.html.

The student is trained from scratch rather than pruned from the teacher: a pruned student inherits
what the short-trained teacher knows and soon outgrows it, leaving the teacher nothing to teach, while a
narrow student from scratch is where distillation shows. ``tests/test_pipeline_run.py`` runs this recipe
with pruning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .pipeline.runner import run_pipeline
from .yaml_numbers import load_yaml

RECIPE = Path(__file__).parent / "pipeline" / "recipes" / "quickstart.yaml"


def quickstart_recipe(tiny: bool = False) -> dict:
    """The quickstart recipe; ``tiny`` is a minutes-long variant for tests (every stage runs, accuracy aside)."""
    recipe = load_yaml(RECIPE.read_text())
    if tiny:
        recipe["data"]["shapes"] = {"n_train": 24, "n_val": 8}
        recipe["teacher"]["train"]["epochs"] = 1
        recipe["train"]["epochs"] = 1
        recipe["export"]["int8"]["calib_images"] = 24
        recipe["demo"]["frames"] = 8
    return recipe


def run_quickstart(workdir: Path = Path("runs/quickstart"), tiny: bool = False,
                   log: Callable[[str], None] = print) -> Path:
    """Run the quickstart in ``workdir`` (finished stages found there are reused); return report.md."""
    return run_pipeline(quickstart_recipe(tiny), workdir, log)
