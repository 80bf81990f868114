"""``detdistill.pipeline`` is the library of ``detdistill run``: its functions import from the package, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_package_exports_the_runner_without_importing_it_up_front():
    code = ("import sys, detdistill.pipeline as p; heavy = sorted({'cv2', 'numpy', 'torch'} & set(sys.modules)); "
            "from detdistill.pipeline import check_pipeline, run_pipeline, PipelineError; "
            "print(heavy, run_pipeline.__module__, check_pipeline.__module__, PipelineError.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "detdistill.pipeline.runner", "detdistill.pipeline.runner", "detdistill.pipeline.schema"]


def test_an_unknown_name_is_an_attribute_error():
    import detdistill.pipeline as pipeline

    with pytest.raises(AttributeError, match="module 'detdistill.pipeline' has no attribute 'run_pipline'"):
        pipeline.run_pipline  # noqa: B018


def test_the_exported_check_refuses_a_bad_recipe_naming_the_field(tmp_path):
    from detdistill.pipeline import PipelineError, check_pipeline

    recipe = {"data": {"shapes": {}}, "teacher": {"weights": "yolov8n"}, "student": {"width": 2},
              "workdir": str(tmp_path / "w")}
    with pytest.raises(PipelineError, match=r"student.width: must be a number in \(0, 1\]"):
        check_pipeline(recipe)
