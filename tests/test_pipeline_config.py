"""Pipeline recipes: typed sections with defaults filled in, every mistake named by its field, and every key
used by a stage."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from detdistill.pipeline.config import PipelineError, load_pipeline, validate
from detdistill.quickstart import RECIPE

BASE = {"data": {"yaml": "d.yaml"}, "teacher": {"weights": "yolov8s"}, "student": {"prune": {"target": 0.4}}}


def test_defaults_fill_in_and_alternatives_are_recorded():
    cfg = validate(BASE)
    assert (cfg.data.kind, cfg.teacher.kind, cfg.student.kind) == ("yaml", "weights", "prune")
    assert dataclasses.asdict(cfg.student.prune) == {"target": 0.4, "metric": "gflops", "importance": None,
                                                     "refit": True, "calib_images": 128}
    assert cfg.export.int8.target == "cpu" and cfg.distill.baseline is True
    assert cfg.data.shapes is None  # an unchosen alternative stays empty
    assert cfg.distill.class_map == {} and cfg.train == {}  # free-form mappings
    assert (cfg.student.imgsz, cfg.student.freeze_bn) == (640, True)  # resolved: top-level imgsz, inherited weights
    small = validate({**BASE, "imgsz": 320, "student": {"model": "yolov8n.yaml", "imgsz": 224}}).student
    assert (small.imgsz, small.freeze_bn) == (224, False)


def test_null_turns_a_section_off_and_an_empty_top_level_section_takes_its_defaults():
    assert validate({**BASE, "export": {"int8": None}}).export.int8 is None
    assert validate({**BASE, "export": {"engines": None}}).export.engines is None  # `engines:` builds none
    assert validate(BASE).export.engines == ["fp16", "int8"]
    cfg = validate({**BASE, "demo": None, "measure": None, "export": None})
    assert (cfg.demo.frames, cfg.measure.bench_runs, cfg.export.int8.calib_images) == (0, 50, 300)


def test_a_null_recipe_trains_no_distilled_student_and_needs_the_baseline():
    assert validate({**BASE, "distill": {"recipe": None}}).distill.recipe is None
    assert validate({**BASE, "distill": {}}).distill.recipe == "default"
    with pytest.raises(PipelineError, match="with no recipe, set baseline: true"):
        validate({**BASE, "distill": {"recipe": None, "baseline": False}})


def test_quantization_aware_distillation_is_off_unless_asked_for():
    assert validate(BASE).qad is None
    assert dataclasses.asdict(validate({**BASE, "export": {"int8": {"qad": {}}}}).qad) == {"epochs": 10,
                                                                                          "recipe": None,
                                                                                          "teacher": "self"}
    assert validate({**BASE, "export": {"int8": {"qad": {"epochs": 3}}}}).export.int8.qad.epochs == 3
    assert validate({**BASE, "export": {"int8": None}}).qad is None


@pytest.mark.parametrize("change, message", [
    ({"student": {"prune": {"target": 1.5}}}, "student.prune.target: must be a number in (0, 1), got 1.5 (the fraction"),
    ({"student": {"prune": {"target": 0}}}, "student.prune.target: must be a number in (0, 1), got 0"),
    ({"student": {"prune": {"target": 1}}}, "student.prune.target: must be a number in (0, 1), got 1"),
    ({"student": {"prune": {}, "imgsz": 100}}, "student.imgsz: must be a multiple of 32"),
    ({"student": {"prune": {"taget": 0.5}}}, "student.prune.taget: unknown field"),
    ({"student": {"prune": {"refit": "yes"}}}, "student.prune.refit: true (refit the pruned layers"),
    ({"student": {"prune": {"target": 0.5, "importance": "foo"}}}, "student.prune.importance: must be one of var"),
    ({"student": {"model": "a.yaml", "width": 0.5}}, "student: give exactly one of prune, model, width"),
    ({"data": {}}, "data: give exactly one of yaml, coco_subset, shapes"),
    ({"data": {"coco_subset": {"coco": "/c"}}}, "data.coco_subset: needs coco"),
    ({"imgsz": 300}, "imgsz: must be a multiple of 32"),
    ({"export": {"int8": {"target": "gpu"}}}, "export.int8.target: cpu or tensorrt"),
    ({"export": {"engines": ["int4"]}}, "export.engines: each of fp32, fp16, int8"),
    ({"export": {"int8": {"qad": {"epochs": 0}}}}, "export.int8.qad.epochs: must be an integer in [1"),
    ({"export": {"int8": {"qad": {"epoch": 2}}}}, "export.int8.qad.epoch: unknown field"),
    ({"export": {"int8": {"qad": {"teacher": "yolov8s"}}}}, "export.int8.qad.teacher: self (the student's own FP32"),
    ({"distill": {"recipe": "cwdd"}}, "distill.recipe: recipe 'cwdd' not found"),
    ({"names": ["car"], "val": "images/val"}, "this is a dataset YAML (names:, val:): `detdistill run` takes a"),
    ({"export": {"int8": {"qad": {"recipe": "logit-bx"}}}}, "export.int8.qad.recipe: recipe 'logit-bx' not found"),
    ({"measure": {"bench_runs": 10}}, "measure.bench_runs: must be an integer in [50"),
    ({"train": ["epochs", 3]}, "train: expected a mapping"),
    ({"colour": "red"}, "colour: unknown field; the recipe accepts name,"),
    ({"export": {"onnx": True}}, "export.onnx: not a setting: every model is always exported to ONNX"),
    ({"export": {"int8": {"method": "kl"}}}, "export.int8.method: one of minmax, entropy, percentile, got 'kl'"),
    ({"export": {"int8": {"calib_images": 0}}}, "export.int8.calib_images: must be an integer in [1"),
    ({"export": {"int8": {"max_drop": 5}}}, "export.int8.max_drop: must be a number in [0, 1]"),
    ({"export": {"engines": "fp16"}}, "export.engines: a list such as [fp16, int8]"),
    ({"measure": {"eval_limit": 0}}, "measure.eval_limit: must be an integer in [1"),
    ({"data": {"shapes": {"n_val": 0}}}, "data.shapes.n_val: must be an integer in [1"),
    ({"teacher": {"train": {"epochs": 2.5}}}, "teacher.train.epochs: must be an integer in [1"),
    ({"distill": {"baseline": "no"}}, "distill.baseline: true or false"),
    ({"distill": {"augment": "raod"}}, "distill.augment: unknown augmentation preset 'raod': choose from road"),
    ({"distill": {"teacher_clean": True}}, "distill.teacher_clean: keeps the teacher's images clean of an "
     "augmentation preset, and there is none: add distill.augment: road"),
    ({"distill": {"teacher_clean": "yes"}}, "distill.teacher_clean: true or false"),
    ({"distill": {"recipe": None, "augment": "road", "teacher_clean": True}},
     "distill.teacher_clean: keeps the KD teacher's images clean, and distill.recipe is null"),
    ({"distill": {"average": 0.5}}, "distill.average: the share of the student distilled under distill.augment in "
     "its average with the same student distilled on clean images, and there is no augmentation preset: add "
     "distill.augment: road, or drop average"),
    ({"distill": {"augment": "road", "recipe": None, "average": 0.5}}, "and there is no distilled student: set "
     "distill.recipe (e.g. default), or drop average"),
    ({"distill": {"augment": "road", "average": 1}}, "distill.average: 1 is the student distilled under "
     "distill.augment alone: drop average"),
    ({"distill": {"augment": "road", "average": 1.5}}, "distill.average: must be a number in (0, 1), got 1.5"),
    ({"student": {"width": 0.25}, "distill": {"augment": "road", "average": 0.5}}, "distill.average averages two "
     "fine-tunes of one trained student, and student.width trains one from scratch"),
    ({"distill": {"augment": "road", "average": "half"}}, "distill.average: must be a number in (0, 1), got 'half'"),
    ({"measure": {"corrupt": "fog:9"}}, "measure.corrupt: corruption 'fog': severity must be an integer from 1"),
    ({"measure": {"corrupt": "haze"}}, "measure.corrupt: unknown corruption 'haze'"),
    ({"measure": {"corrupt": ["fog"]}}, "measure.corrupt: a string such as 'all'"),
    ({"student": {"model": ["a.yaml"]}}, "student.model: expected a model YAML"),
    ({"export": {"engines": ["fp16", "fp16"]}}, "export.engines: each precision once"),
    ({"name": "../../escape"}, "name: '../../escape' is a path"),
    ({"name": " "}, "name: empty; it names the work folder"),
    ({"data": {"yaml": "d.yaml", "pseudo_conf": 0.5}}, "data.pseudo_conf sets the teacher's confidence for "
                                                       "data.unlabeled images: add data.unlabeled"),
])
def test_errors_name_the_field(change, message):
    with pytest.raises(PipelineError) as e:
        validate({**BASE, **change})
    assert message in str(e.value)


def test_recipe_files_load_and_bad_yaml_is_named(tmp_path):
    cfg, text = load_pipeline(RECIPE)
    assert cfg.data.kind == "shapes" and "quickstart" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(PipelineError, match="is not valid YAML"):
        load_pipeline(bad)
    with pytest.raises(PipelineError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml")
    with pytest.raises(PipelineError, match="is a folder: pass the pipeline recipe YAML"):
        load_pipeline(tmp_path)  # a work folder given as the recipe
    for wrong in (5, ["data: {yaml: d.yaml}"]):
        with pytest.raises(PipelineError, match="a pipeline recipe is the path of its YAML or a mapping, got"):
            load_pipeline(wrong)
    twice = tmp_path / "twice.yaml"  # PyYAML keeps the last of two keys: the 100-epoch block would win silently
    twice.write_text("data: {yaml: d.yaml}\ntrain: {epochs: 1}\nteacher: {weights: yolov8s}\ntrain:\n  epochs: 100\n")
    with pytest.raises(PipelineError, match=r"found the key 'train' twice \(first on line 2\)") as e:
        load_pipeline(twice)
    assert str(e.value).endswith("keep one, line 4 column 1") and "\n" not in str(e.value)  # no PyYAML excerpt
    exponents = tmp_path / "exponents.yaml"  # YAML 1.1 reads 1e-4 (no dot) as text; users mean the number
    exponents.write_text("data: {yaml: d.yaml}\nteacher: {weights: yolov8s}\nstudent: {model: yolov8n.yaml}\n"
                         "train: {lr0: 1e-4}\nexport: {int8: {max_drop: 5E-3}}\n")
    cfg = load_pipeline(exponents)[0]
    assert cfg.train == {"lr0": 1e-4} and cfg.export.int8.max_drop == 0.005


def test_run_command_reports_a_bad_recipe_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from detdistill.cli import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {yaml: d.yaml}\nteacher: {weights: t.pt}\nstudent: {prune: {target: 0}}\n")
    result = CliRunner().invoke(app, ["run", str(recipe)])
    assert result.exit_code == 2 and "student.prune.target: must be a number in (0, 1)" in result.output
    recipe.write_text(f"data: {{yaml: {tmp_path / 'missing.yaml'}}}\nteacher: {{weights: t.pt}}\nstudent: {{width: 0.5}}\n")
    result = CliRunner().invoke(app, ["run", str(recipe), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and "missing.yaml does not exist" in result.output


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "tools" / "pipelines").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_benchmark_pipelines_are_valid(recipe):
    from detdistill.distill.recipe import load_recipe

    cfg, _ = load_pipeline(recipe)
    assert cfg.data.yaml.startswith("../shared/fixtures/")  # the fixtures, from the repository root
    load_recipe(cfg.distill.recipe)  # a built-in recipe name or a file that parses


def _leaf_keys(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted path, field name)`` of every recipe key, sections included."""
    out = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        out.append((path, f.name))
        if "section" in f.metadata:
            out += _leaf_keys(f.metadata["section"], path)
    return out


def test_every_recipe_key_is_read_by_a_stage():
    """A key that parses but that no stage reads is a setting that silently does nothing (as ``export.onnx`` was):
    every field of the config must be read as an attribute somewhere in the pipeline outside the config itself."""
    from detdistill.pipeline import config

    package = Path(config.__file__).parent
    read = {node.attr for path in package.rglob("*.py") if path.name not in ("config.py", "schema.py")
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Attribute)}
    unread = [path for path, name in _leaf_keys(config.PipelineConfig) if name not in read]
    assert unread == []
    assert [p for p, _ in _leaf_keys(config.PipelineConfig)] == _schema_paths(config.SCHEMA)


def _schema_paths(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, default in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        out.append(path)
        if isinstance(default, dict) and default:
            out += _schema_paths(default, path)
    return out


def test_the_check_says_what_a_run_makes_and_what_the_recipe_turned_off(coco8_yaml):
    """`run --check` prints the plan: an `int8:` left empty (null) makes no INT8 model, without a word before."""
    from detdistill.pipeline.runner import run_plan

    base = {"data": {"yaml": str(coco8_yaml)}, "teacher": {"weights": "yolov8n-coco"}, "student": {"prune": {}}}
    full = run_plan(load_pipeline({**base, "export": {"int8": {"qad": {"epochs": 1}, "max_drop": 0.01}},
                                   "measure": {"corrupt": "all"}})[0])
    assert "a student without KD; a student with KD (recipe default)" in full, full
    assert "INT8 (cpu target, within 0.01 mAP); quantization-aware distillation (1 epoch)" in full, full
    assert "TensorRT engines fp16, int8 where TensorRT is installed" in full and "with corruption scores" in full
    off = run_plan(load_pipeline({**base, "distill": {"recipe": None}, "export": {"int8": None, "engines": []}})[0])
    assert "no INT8 model (export.int8 is null or empty)" in off and "no TensorRT engine" in off, off
    assert "with KD" not in off and "demo" not in off
    averaged = run_plan(load_pipeline({**base, "distill": {"augment": "road", "average": 0.5}})[0])
    assert "a student with KD (recipe default), the weight average (0.5) of it distilled under 'road' and on clean " \
        "images" in averaged, averaged
