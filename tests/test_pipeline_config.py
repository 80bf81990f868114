"""Pipeline recipes: defaults filled in, and every mistake named by its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from detdistill.pipeline.config import PipelineError, load_pipeline, validate
from detdistill.quickstart import RECIPE

BASE = {"data": {"yaml": "d.yaml"}, "teacher": {"weights": "yolov8s"}, "student": {"prune": {"target": 0.4}}}


def test_defaults_fill_in_and_alternatives_are_recorded():
    cfg = validate(BASE)
    assert (cfg["data"]["kind"], cfg["teacher"]["kind"], cfg["student"]["kind"]) == ("yaml", "weights", "prune")
    assert cfg["student"]["prune"] == {"target": 0.4, "metric": "gflops", "importance": None, "refit": True,
                                       "calib_images": 128}
    assert cfg["export"]["int8"]["target"] == "cpu" and cfg["distill"]["baseline"] is True
    assert cfg["data"]["shapes"] is None  # an unchosen alternative stays empty


def test_null_turns_a_section_off():
    assert validate({**BASE, "export": {"int8": None}})["export"]["int8"] is None


def test_quantization_aware_distillation_is_off_unless_asked_for():
    assert validate(BASE)["export"]["int8"]["qad"] is None
    assert validate({**BASE, "export": {"int8": {"qad": {}}}})["export"]["int8"]["qad"] == {"epochs": 10, "recipe": None}
    assert validate({**BASE, "export": {"int8": {"qad": {"epochs": 3}}}})["export"]["int8"]["qad"]["epochs"] == 3


@pytest.mark.parametrize("change, message", [
    ({"student": {"prune": {"target": 1.5}}}, "student.prune.target: must be a number in (0, 1]"),
    ({"student": {"prune": {"target": 1}}}, "student.prune.target: must be below 1"),
    ({"student": {"prune": {"taget": 0.5}}}, "student.prune.taget: unknown field"),
    ({"student": {"prune": {"refit": "yes"}}}, "student.prune.refit: true (refit the pruned layers"),
    ({"student": {"model": "a.yaml", "width": 0.5}}, "student: give exactly one of prune, model, width"),
    ({"data": {}}, "data: give exactly one of yaml, coco_subset, shapes"),
    ({"data": {"coco_subset": {"coco": "/c"}}}, "data.coco_subset: needs coco"),
    ({"imgsz": 300}, "imgsz: must be a multiple of 32"),
    ({"export": {"int8": {"target": "gpu"}}}, "export.int8.target: cpu or tensorrt"),
    ({"export": {"engines": ["int4"]}}, "export.engines: each of fp32, fp16, int8"),
    ({"export": {"int8": {"qad": {"epochs": 0}}}}, "export.int8.qad.epochs: must be an integer in [1"),
    ({"export": {"int8": {"qad": {"epoch": 2}}}}, "export.int8.qad.epoch: unknown field"),
    ({"measure": {"bench_runs": 10}}, "measure.bench_runs: must be an integer in [50"),
    ({"train": ["epochs", 3]}, "train: expected a mapping"),
    ({"colour": "red"}, "colour: unknown field; the recipe accepts name,"),
])
def test_errors_name_the_field(change, message):
    with pytest.raises(PipelineError) as e:
        validate({**BASE, **change})
    assert message in str(e.value)


def test_recipe_files_load_and_bad_yaml_is_named(tmp_path):
    cfg, text = load_pipeline(RECIPE)
    assert cfg["data"]["kind"] == "shapes" and "quickstart" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(PipelineError, match="is not valid YAML"):
        load_pipeline(bad)
    with pytest.raises(PipelineError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml")


def test_run_command_reports_a_bad_recipe_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from detdistill.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {yaml: d.yaml}\nteacher: {weights: t.pt}\nstudent: {prune: {target: 0}}\n")
    result = CliRunner().invoke(app, ["run", str(recipe)])
    assert result.exit_code == 2 and "student.prune.target: must be a number in (0, 1]" in result.output
    recipe.write_text(f"data: {{yaml: {tmp_path / 'missing.yaml'}}}\nteacher: {{weights: t.pt}}\nstudent: {{width: 0.5}}\n")
    result = CliRunner().invoke(app, ["run", str(recipe), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and "missing.yaml does not exist" in result.output


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "tools" / "pipelines").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_benchmark_pipelines_are_valid(recipe):
    from detdistill.distill.recipe import load_recipe

    cfg, _ = load_pipeline(recipe)
    assert cfg["data"]["yaml"].startswith("../shared/fixtures/")  # the fixtures, from the repository root
    load_recipe(cfg["distill"]["recipe"])  # a built-in recipe name or a file that parses
