"""The pipeline recipe: one YAML that says what to shrink, how, and what to measure.

Example (every section but ``data`` and ``teacher`` is optional)::

    name: road                        # work folder: runs/pipeline/road
    imgsz: 640
    data:
      yaml: datasets/road/data.yaml   # or coco_subset: {coco: /data/coco, preset: road, max_images: 3000}
      unlabeled: /data/dashcam        # optional: your own frames, labelled by the teacher
    teacher: {weights: yolov8s}       # a registry name or a .pt; or train: {model: yolov8n.yaml, epochs: 50}
    student: {prune: {target: 0.5}}   # or model: yolov8n.yaml (from scratch), or weights: teacher
                                      # imgsz: 224 under student runs the student at its own input size
    train: {epochs: 60, batch: 16}    # ultralytics train arguments, the same for both students
    distill: {recipe: default, baseline: true}
    export: {int8: {target: tensorrt, calib_images: 500}, engines: [fp16, int8]}
                                      # int8.qad: {epochs: 10} adds quantization-aware distillation

Errors name the field, e.g. ``student.prune.target: must be in (0, 1)``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

# section -> {key: default}; a nested dict default is itself a schema, None means "no default".
SCHEMA: dict[str, Any] = {
    "name": "pipeline",
    "workdir": None,
    "imgsz": 640,
    "seed": 0,
    "device": None,
    "data": {
        "yaml": None,
        "coco_subset": {"coco": None, "classes": None, "preset": None, "max_images": None, "negatives": 0.1},
        "shapes": {"n_train": 300, "n_val": 60, "size": 192},
        "unlabeled": None,
        "pseudo_conf": 0.4,
    },
    "teacher": {
        "weights": None,
        "train": {"model": "yolov8n.yaml", "epochs": 50, "args": {}},
    },
    "student": {
        "prune": {"target": 0.5, "metric": "gflops", "importance": None, "refit": True, "calib_images": 128},
        "model": None,
        "width": None,
        "weights": None,
        "imgsz": None,
        "freeze_bn": None,
    },
    "train": {},
    "distill": {"recipe": "default", "class_map": None, "baseline": True},
    "export": {
        "onnx": True,
        "int8": {"target": "cpu", "calib_images": 300, "method": "minmax", "max_drop": None,
                 "qad": {"epochs": 10, "recipe": None}},
        "engines": ["fp16", "int8"],
    },
    "measure": {"bench_runs": 50, "eval_limit": None},
    "demo": {"frames": 0},
}
ONE_OF = {"data": ("yaml", "coco_subset", "shapes"), "teacher": ("weights", "train"),
          "student": ("prune", "model", "width", "weights")}
FREE_FORM = {"train", "teacher.train.args", "distill.class_map"}
OPTIONAL = {"export.int8.qad"}  # sub-sections that are off unless given (given empty: on, with their defaults)


class PipelineError(ValueError):
    """A pipeline recipe field is missing, unknown or out of range."""


def _merge(schema: dict, given: Any, where: str) -> dict:
    """``given`` checked against ``schema`` (unknown keys are errors) with defaults filled in."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise PipelineError(f"{where or 'the recipe'}: expected a mapping, got {type(given).__name__} {given!r}")
    unknown = sorted(set(given) - set(schema))
    if unknown:
        raise PipelineError(f"{where + '.' if where else ''}{unknown[0]}: unknown field; "
                            f"{where or 'the recipe'} accepts {', '.join(schema)}")
    out = {}
    for key, default in schema.items():
        path = f"{where}.{key}" if where else key
        value = given.get(key)
        if isinstance(default, dict) and default and path not in FREE_FORM:
            # a sub-section: an alternative of a ONE_OF section exists only when given; others get their
            # defaults when absent, and `key: null` turns them off
            if key not in given:
                out[key] = None if where in ONE_OF or path in OPTIONAL else _merge(default, None, path)
            else:
                out[key] = None if value is None else _merge(default, value, path)
        elif path in FREE_FORM:
            if value is not None and not isinstance(value, dict):
                raise PipelineError(f"{path}: expected a mapping of key: value, got {value!r}")
            out[key] = dict(value or {})
        else:
            out[key] = copy.deepcopy(default) if value is None else value
    return out


def _one_of(cfg: dict, section: str) -> str:
    present = [k for k in ONE_OF[section] if cfg[section].get(k) is not None]
    if len(present) != 1:
        raise PipelineError(f"{section}: give exactly one of {', '.join(ONE_OF[section])} (got {present or 'none'})")
    return present[0]


def _number(cfg: dict, path: str, lo: float, hi: float, *, integer: bool = False, open_lo: bool = False) -> None:
    node = cfg
    for part in path.split(".")[:-1]:
        node = node[part]
    value = node[path.split(".")[-1]]
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        lo_b = "(" if open_lo else "["
        raise PipelineError(f"{path}: must be {'an integer' if integer else 'a number'} in {lo_b}{lo}, {hi}], got {value!r}")


def validate(raw: dict) -> dict:
    """A complete, checked pipeline config from a (partial) recipe mapping."""
    cfg = _merge(SCHEMA, raw, "")
    for section in ONE_OF:
        kind = _one_of(cfg, section)
        cfg[section]["kind"] = kind
    _number(cfg, "imgsz", 32, 4096, integer=True)
    if cfg["imgsz"] % 32:
        raise PipelineError(f"imgsz: must be a multiple of 32 (the largest stride), got {cfg['imgsz']}")
    if cfg["student"]["kind"] == "prune":
        _number(cfg, "student.prune.target", 0, 1, open_lo=True)
        if cfg["student"]["prune"]["target"] >= 1:
            raise PipelineError("student.prune.target: must be below 1 (the fraction of the teacher to keep, e.g. 0.5)")
        if cfg["student"]["prune"]["metric"] not in ("gflops", "params"):
            raise PipelineError(f"student.prune.metric: gflops or params, got {cfg['student']['prune']['metric']!r}")
        if not isinstance(cfg["student"]["prune"]["refit"], bool):
            raise PipelineError("student.prune.refit: true (refit the pruned layers on the train images) or false")
        _number(cfg, "student.prune.calib_images", 1, 100000, integer=True)
    if cfg["student"]["kind"] == "width":
        _number(cfg, "student.width", 0, 1, open_lo=True)
    if cfg["student"]["imgsz"] is not None:
        _number(cfg, "student.imgsz", 32, 4096, integer=True)
        if cfg["student"]["imgsz"] % 32:
            raise PipelineError(f"student.imgsz: must be a multiple of 32, got {cfg['student']['imgsz']}")
    else:
        cfg["student"]["imgsz"] = cfg["imgsz"]
    if cfg["student"]["freeze_bn"] is None:  # students that inherit weights keep their BatchNorm statistics
        cfg["student"]["freeze_bn"] = cfg["student"]["kind"] in ("prune", "weights")
    elif not isinstance(cfg["student"]["freeze_bn"], bool):
        raise PipelineError("student.freeze_bn: true, false, or leave it out (true for prune and weights students)")
    if cfg["data"]["kind"] == "coco_subset":
        sub = cfg["data"]["coco_subset"]
        if not sub["coco"] or not (sub["classes"] or sub["preset"]):
            raise PipelineError("data.coco_subset: needs coco (the COCO folder) and classes or preset")
    if cfg["export"]["int8"] is not None and cfg["export"]["int8"]["target"] not in ("cpu", "tensorrt"):
        raise PipelineError(f"export.int8.target: cpu or tensorrt, got {cfg['export']['int8']['target']!r}")
    if cfg["export"]["int8"] is not None and cfg["export"]["int8"]["qad"] is not None:
        _number(cfg, "export.int8.qad.epochs", 1, 100000, integer=True)
    bad = [e for e in cfg["export"]["engines"] or [] if e not in ("fp32", "fp16", "int8")]
    if bad:
        raise PipelineError(f"export.engines: each of fp32, fp16, int8; got {bad[0]!r}")
    _number(cfg, "data.pseudo_conf", 0, 1, open_lo=True)
    _number(cfg, "measure.bench_runs", 50, 100000, integer=True)
    _number(cfg, "demo.frames", 0, 100000, integer=True)
    if cfg["distill"]["recipe"] is None and not cfg["distill"]["baseline"]:
        raise PipelineError("distill: with no recipe, set baseline: true (otherwise nothing is trained)")
    return cfg


def load_pipeline(source: str | Path | dict) -> tuple[dict, str]:
    """Read and check a pipeline recipe; return ``(config, recipe text as given)``.

    Relative paths in the file (data.yaml, teacher.weights, ...) stay relative to the current folder,
    like every other ``detdistill`` argument.
    """
    if isinstance(source, dict):
        return validate(source), yaml.safe_dump(source, sort_keys=False)
    path = Path(source)
    if not path.is_file():
        raise PipelineError(f"pipeline recipe {path} does not exist; see `detdistill run --help` for an example")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PipelineError(f"{path} is not valid YAML: {e}") from e
    return validate(raw or {}), text
