"""The pipeline recipe: one YAML that says what to shrink, how, and what to measure, read into one dataclass per
section (:class:`PipelineConfig` holds them).

Example (every section but ``data``, ``teacher`` and ``student`` is optional)::

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
                                      # int8.qad: {epochs: 10} adds quantization-aware distillation (from
                                      # the student's own FP32 weights; teacher: teacher for the teacher)

Errors name the field, e.g. ``student.prune.target: must be a number in (0, 1), got 1.5``.
The module is over 400 lines because every section and the checks of its values live together, so that one file
documents what a recipe may say. Values keep the types the YAML gave them (paths stay strings): the stage keys of
existing work folders are computed from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ..data.corruptions import CorruptionError, albumentations, parse_spec
from ..data.unlabeled import PSEUDO_CONF
from ..models import MAX_STRIDE
from ..yaml_numbers import load_yaml, yaml_problem
from .schema import PipelineError, build, free_form, null_means_off, paths_where, schema_of, section

__all__ = ["PipelineConfig", "PipelineError", "SCHEMA", "FREE_FORM", "ONE_OF", "OPTIONAL", "load_pipeline",
           "validate"]


class _OneOf:
    """A section that takes exactly one of its ``ALTERNATIVES``; :attr:`kind` is the one given."""

    ALTERNATIVES: ClassVar[tuple[str, ...]] = ()

    @property
    def kind(self) -> str:
        present = [k for k in self.ALTERNATIVES if getattr(self, k) is not None]
        return present[0] if len(present) == 1 else ""


@dataclass(frozen=True)
class CocoSubsetSpec:
    """``data.coco_subset``: a YOLO dataset of some COCO classes, built from a COCO 2017 download."""

    coco: str | None = None
    classes: list | str | None = None
    preset: str | None = None
    max_images: int | None = None
    negatives: float = 0.1


@dataclass(frozen=True)
class ShapesSpec:
    """``data.shapes``: a generated dataset of coloured shapes."""

    n_train: int = 300
    n_val: int = 60
    size: int = 192


@dataclass(frozen=True)
class DataSection(_OneOf):
    """``data``: the dataset, and optional unlabeled images for the distilled student."""

    ALTERNATIVES: ClassVar[tuple[str, ...]] = ("yaml", "coco_subset", "shapes")
    yaml: str | None = None
    coco_subset: CocoSubsetSpec | None = section(CocoSubsetSpec, off_unless_given=True)
    shapes: ShapesSpec | None = section(ShapesSpec, off_unless_given=True)
    unlabeled: str | None = None
    pseudo_conf: float = PSEUDO_CONF


@dataclass(frozen=True)
class TeacherTrainSpec:
    """``teacher.train``: a teacher trained on the dataset first."""

    model: str = "yolov8n.yaml"
    epochs: int = 50
    args: dict = free_form()


@dataclass(frozen=True)
class TeacherSection(_OneOf):
    """``teacher``: a registry name or ``.pt``, or a teacher to train."""

    ALTERNATIVES: ClassVar[tuple[str, ...]] = ("weights", "train")
    weights: str | None = None
    train: TeacherTrainSpec | None = section(TeacherTrainSpec, off_unless_given=True)


@dataclass(frozen=True)
class PruneSpec:
    """``student.prune``: the teacher pruned to a budget, keeping its weights."""

    target: float = 0.5
    metric: str = "gflops"
    importance: str | None = None
    refit: bool = True
    calib_images: int = 128


@dataclass(frozen=True)
class StudentSection(_OneOf):
    """``student``: what the student is (pruned teacher, model YAML, width multiple or checkpoint), its input size
    and BatchNorm handling. After :func:`validate`, ``imgsz`` and ``freeze_bn`` are never None."""

    ALTERNATIVES: ClassVar[tuple[str, ...]] = ("prune", "model", "width", "weights")
    prune: PruneSpec | None = section(PruneSpec, off_unless_given=True)
    model: str | None = None
    width: float | None = None
    weights: str | None = None
    imgsz: int | None = None
    freeze_bn: bool | None = None


@dataclass(frozen=True)
class DistillSection:
    """``distill``: the KD recipe (None: no distilled student) and whether to train the no-KD baseline."""

    recipe: str | None = null_means_off("default")  # null: no distilled student
    class_map: dict = free_form()
    baseline: bool = True
    augment: str | None = None  # training augmentation preset (detdistill.data.road_augment), both students
    teacher_clean: bool = False  # with augment: the KD teacher sees each image before the preset
    average: float | None = None  # with augment: also distill without it, ship the weight average (its share)


@dataclass(frozen=True)
class QadSpec:
    """``export.int8.qad``: quantization-aware distillation of the final student."""

    epochs: int = 10
    recipe: str | None = None
    teacher: str = "self"  # self: the final student's own FP32 weights; teacher: the pipeline's teacher


@dataclass(frozen=True)
class Int8Spec:
    """``export.int8``: post-training INT8 of the final student (and, with ``qad``, a quantization-aware one)."""

    target: str = "cpu"
    calib_images: int = 300
    method: str = "minmax"
    max_drop: float | None = None
    qad: QadSpec | None = section(QadSpec, off_unless_given=True)


@dataclass(frozen=True)
class ExportSection:
    """``export``: INT8 and TensorRT engines (ONNX export of every model always runs)."""

    int8: Int8Spec | None = section(Int8Spec, null_turns_off=True)
    engines: list | None = null_means_off(factory=lambda: ["fp16", "int8"])  # null: no engines, as []


@dataclass(frozen=True)
class MeasureSection:
    """``measure``: how artifacts are timed and scored."""

    bench_runs: int = 50
    eval_limit: int | None = None
    corrupt: str | None = None  # e.g. "all" or "fog,rain:3": each ONNX artifact also scored under corruptions


@dataclass(frozen=True)
class DemoSection:
    """``demo``: the headless demo on a video of validation images (0 frames: no demo)."""

    frames: int = 0


@dataclass(frozen=True)
class PipelineConfig:
    """A whole, checked pipeline recipe (see the module docstring)."""

    name: str = "pipeline"
    workdir: str | None = None
    imgsz: int = 640
    seed: int = 0
    device: str | None = None
    data: DataSection = section(DataSection)
    teacher: TeacherSection = section(TeacherSection)
    student: StudentSection = section(StudentSection)
    train: dict = free_form()
    distill: DistillSection = section(DistillSection)
    export: ExportSection = section(ExportSection)
    measure: MeasureSection = section(MeasureSection)
    demo: DemoSection = section(DemoSection)

    @property
    def qad(self) -> QadSpec | None:
        """The quantization-aware distillation settings, None when it is off."""
        return self.export.int8.qad if self.export.int8 is not None else None


# {key: default} of every recipe key (docs/pipeline.md documents each; tests/test_docs.py checks it)
SCHEMA: dict[str, Any] = schema_of(PipelineConfig)
FREE_FORM: set[str] = paths_where(PipelineConfig, lambda m: bool(m.get("free_form")))
OPTIONAL: set[str] = paths_where(PipelineConfig, lambda m: m.get("off_unless_given", False))
ONE_OF = {"data": DataSection.ALTERNATIVES, "teacher": TeacherSection.ALTERNATIVES,
          "student": StudentSection.ALTERNATIVES}
# keys that are not settings, with why: refused with this message instead of "unknown field"
REFUSED = {"export.onnx": "not a setting: every model is always exported to ONNX (every later stage reads the "
                          "ONNX); remove this key"}
INT8_METHODS = ("minmax", "entropy", "percentile")
PRECISIONS = ("fp32", "fp16", "int8")


def _number(value: Any, path: str, lo: float, hi: float, *, integer: bool = False, open_lo: bool = False,
            open_hi: bool = False, optional: bool = False) -> None:
    if optional and value is None:
        return
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (lo < value if open_lo else lo <= value) and (value < hi if open_hi else value <= hi)
    if not ok:
        interval = f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
        raise PipelineError(f"{path}: must be {'an integer' if integer else 'a number'} in {interval}, got {value!r}")


def _kd_recipe(value: str | None, path: str) -> None:
    """A KD recipe that does not load (a typo in its name, a bad file) is named now, not after the teacher trains."""
    if value is None:
        return
    from ..distill.recipe import load_recipe  # lazy: torch (a recipe is checked before anything loads)
    from ..distill.registry import RecipeError

    try:
        load_recipe(value)
    except RecipeError as e:
        raise PipelineError(f"{path}: {e}") from None


def _text(value: Any, path: str, what: str, optional: bool = True) -> None:
    if (value is None and optional) or isinstance(value, str):
        return
    raise PipelineError(f"{path}: expected {what}, got {value!r}")


def _imgsz(value: Any, path: str) -> None:
    _number(value, path, MAX_STRIDE, 4096, integer=True)
    if value % MAX_STRIDE:
        raise PipelineError(f"{path}: must be a multiple of {MAX_STRIDE} (the largest stride), got {value}")


def _check_data(d: DataSection) -> None:
    if d.coco_subset is not None:
        s = d.coco_subset
        if not s.coco or not (s.classes or s.preset):
            raise PipelineError("data.coco_subset: needs coco (the COCO folder) and classes or preset")
        _number(s.max_images, "data.coco_subset.max_images", 1, 10**7, integer=True, optional=True)
        _number(s.negatives, "data.coco_subset.negatives", 0, 10**7)
    if d.shapes is not None:
        _number(d.shapes.n_train, "data.shapes.n_train", 1, 100000, integer=True)
        _number(d.shapes.n_val, "data.shapes.n_val", 1, 100000, integer=True)
        _number(d.shapes.size, "data.shapes.size", 32, 4096, integer=True)
    _text(d.yaml, "data.yaml", "a path to a data YAML")
    _text(d.unlabeled, "data.unlabeled", "a folder or .txt list of images")
    _number(d.pseudo_conf, "data.pseudo_conf", 0, 1, open_lo=True)


def _check_student(s: StudentSection) -> None:
    if s.imgsz is not None:  # first: pruning counts GFLOPs at this size
        _imgsz(s.imgsz, "student.imgsz")
    if s.prune is not None:
        p = s.prune
        try:
            _number(p.target, "student.prune.target", 0, 1, open_lo=True, open_hi=True)
        except PipelineError as e:
            raise PipelineError(f"{e} (the fraction of the teacher's GFLOPs to keep, e.g. 0.5)") from None
        if p.metric not in ("gflops", "params"):
            raise PipelineError(f"student.prune.metric: gflops or params, got {p.metric!r}")
        if not isinstance(p.refit, bool):
            raise PipelineError("student.prune.refit: true (refit the pruned layers on the train images) or false")
        _number(p.calib_images, "student.prune.calib_images", 1, 100000, integer=True)
        _text(p.importance, "student.prune.importance", "a channel ranking name (var, l1, l2, lamp, bn, fpgm)")
        from ..prune import PruneConfig, PruneConfigError  # lazy: torch (a recipe is checked before anything loads)

        try:  # the rest of pruning's own checks, before any stage runs (calib is the dataset, known later)
            PruneConfig(target=p.target, metric=p.metric, imgsz=s.imgsz or 640, refit=p.refit,
                        calib_images=p.calib_images, **({"importance": p.importance} if p.importance else {}))
        except PruneConfigError as e:
            raise PipelineError(f"student.prune.{e.field}: {e.problem}") from e
    if s.width is not None:
        _number(s.width, "student.width", 0, 1, open_lo=True)
    _text(s.model, "student.model", "a model YAML such as yolov8n.yaml")
    _text(s.weights, "student.weights", "a .pt path or 'teacher'")
    if s.freeze_bn is not None and not isinstance(s.freeze_bn, bool):
        raise PipelineError("student.freeze_bn: true, false, or leave it out (true for prune and weights students)")


def _check_export(e: ExportSection) -> None:
    if e.int8 is not None:
        i = e.int8
        if i.target not in ("cpu", "tensorrt"):
            raise PipelineError(f"export.int8.target: cpu or tensorrt, got {i.target!r}")
        if i.method not in INT8_METHODS:
            raise PipelineError(f"export.int8.method: one of {', '.join(INT8_METHODS)}, got {i.method!r}")
        _number(i.calib_images, "export.int8.calib_images", 1, 100000, integer=True)
        _number(i.max_drop, "export.int8.max_drop", 0, 1, optional=True)
        if i.qad is not None:
            _number(i.qad.epochs, "export.int8.qad.epochs", 1, 100000, integer=True)
            _text(i.qad.recipe, "export.int8.qad.recipe", "a recipe name or YAML path")
            _kd_recipe(i.qad.recipe, "export.int8.qad.recipe")
            if i.qad.teacher not in ("self", "teacher"):
                raise PipelineError(f"export.int8.qad.teacher: self (the student's own FP32 weights) or teacher, got "
                                    f"{i.qad.teacher!r}")
    if not isinstance(e.engines, (list, type(None))):
        raise PipelineError(f"export.engines: a list such as [fp16, int8] (or [] or null for none), got {e.engines!r}")
    engines = e.engines or []
    bad = [p for p in engines if p not in PRECISIONS]
    if bad:
        raise PipelineError(f"export.engines: each of fp32, fp16, int8; got {bad[0]!r}")
    if len(set(engines)) != len(engines):
        raise PipelineError(f"export.engines: each precision once (one engine each), got {e.engines!r}")


def _check(cfg: PipelineConfig) -> None:
    for name in ONE_OF:
        part = getattr(cfg, name)
        if not part.kind:
            present = [k for k in part.ALTERNATIVES if getattr(part, k) is not None]
            raise PipelineError(f"{name}: give exactly one of {', '.join(part.ALTERNATIVES)} "
                                f"(got {present or 'none'})")
    _text(cfg.name, "name", "a name (it names the work folder)", optional=False)
    if not cfg.name.strip():
        raise PipelineError("name: empty; it names the work folder runs/pipeline/<name>: give one, e.g. name: vehicles")
    if any(sep in cfg.name for sep in ("/", "\\")) or cfg.name in (".", ".."):
        raise PipelineError(f"name: {cfg.name!r} is a path; a name (it names the work folder runs/pipeline/<name>) has "
                            "no '/' (to choose the folder itself, use workdir or --workdir)")
    _text(cfg.workdir, "workdir", "a folder path")
    _imgsz(cfg.imgsz, "imgsz")
    _number(cfg.seed, "seed", 0, 2**32 - 1, integer=True)
    if cfg.device is not None and (isinstance(cfg.device, bool) or not isinstance(cfg.device, (str, int, list))):
        raise PipelineError(f"device: cpu, 0, 0,1 ... or leave it out, got {cfg.device!r}")
    _check_data(cfg.data)
    _text(cfg.teacher.weights, "teacher.weights", "a registry name or a .pt path")
    if cfg.teacher.train is not None:
        _number(cfg.teacher.train.epochs, "teacher.train.epochs", 1, 100000, integer=True)
        _text(cfg.teacher.train.model, "teacher.train.model", "a model YAML or .pt", optional=False)
    _check_student(cfg.student)
    _text(cfg.distill.recipe, "distill.recipe", "a recipe name or YAML path (or null)")
    _kd_recipe(cfg.distill.recipe, "distill.recipe")
    for key in ("baseline", "teacher_clean"):
        if not isinstance(getattr(cfg.distill, key), bool):
            raise PipelineError(f"distill.{key}: true or false, got {getattr(cfg.distill, key)!r}")
    if cfg.distill.teacher_clean and cfg.distill.augment is None:
        raise PipelineError("distill.teacher_clean: keeps the teacher's images clean of an augmentation preset, and "
                            "there is none: add distill.augment: road (or road-light, road-heavy), or drop "
                            "teacher_clean (without a preset the teacher and the student see the same image)")
    if cfg.distill.teacher_clean and cfg.distill.recipe is None:
        raise PipelineError("distill.teacher_clean: keeps the KD teacher's images clean, and distill.recipe is null, "
                            "so no student is distilled: set distill.recipe (e.g. default), or drop teacher_clean")
    if cfg.distill.average is not None:
        if cfg.distill.average in (0, 1) and not isinstance(cfg.distill.average, bool):
            raise PipelineError(f"distill.average: {cfg.distill.average} is the student distilled "
                                f"{'on clean images' if cfg.distill.average == 0 else 'under distill.augment'} alone: "
                                "drop average (and augment, for the clean one), or give a share between 0 and 1")
        _number(cfg.distill.average, "distill.average", 0, 1, open_lo=True, open_hi=True)
        missing = ("no augmentation preset: add distill.augment: road" if cfg.distill.augment is None else
                   "no distilled student: set distill.recipe (e.g. default)" if cfg.distill.recipe is None else None)
        if cfg.student.kind in ("model", "width"):
            raise PipelineError(f"distill.average averages two fine-tunes of one trained student, and student."
                                f"{cfg.student.kind} trains one from scratch, whose two trainings drift apart: start "
                                "from weights (student.prune or student.weights), or drop average")
        if missing:
            raise PipelineError("distill.average: the share of the student distilled under distill.augment in its "
                                "average with the same student distilled on clean images, and there is "
                                f"{missing}, or drop average")
    if cfg.distill.augment is not None:
        from ..data.road_augment import AugmentationError, check_augment  # lazy: torch (only augment needs it)

        try:
            check_augment(cfg.distill.augment, cfg.distill.teacher_clean)
        except AugmentationError as e:
            raise PipelineError(f"distill.augment: {e}") from e
    _check_export(cfg.export)
    _number(cfg.measure.bench_runs, "measure.bench_runs", 50, 100000, integer=True)
    _number(cfg.measure.eval_limit, "measure.eval_limit", 1, 10**7, integer=True, optional=True)
    if cfg.measure.corrupt is not None:
        try:
            if not isinstance(cfg.measure.corrupt, str):
                raise CorruptionError(f"a string such as 'all' or 'fog,rain:3', got {cfg.measure.corrupt!r}")
            parse_spec(cfg.measure.corrupt)
            albumentations()
        except CorruptionError as e:
            raise PipelineError(f"measure.corrupt: {e}") from e
    _number(cfg.demo.frames, "demo.frames", 0, 100000, integer=True)
    if cfg.distill.recipe is None and not cfg.distill.baseline:
        raise PipelineError("distill: with no recipe, set baseline: true (otherwise nothing is trained)")


def validate(raw: dict) -> PipelineConfig:
    """A complete, checked pipeline config from a (partial) recipe mapping.

    ``student.imgsz`` left out becomes ``imgsz``; ``student.freeze_bn`` left out becomes true for students that
    inherit weights (``prune``, ``weights``), whose BatchNorm statistics their weights expect.
    """
    if isinstance(raw, dict) and "names" in raw and ("val" in raw or "path" in raw):
        raise PipelineError("this is a dataset YAML (names:, val:): `detdistill run` takes a pipeline recipe that "
                            "names it under data: {yaml: PATH}; start from detdistill/pipeline/recipes/quickstart.yaml "
                            "or the example in `detdistill run --help`")
    cfg = build(PipelineConfig, raw, "", REFUSED)
    _check(cfg)
    if "pseudo_conf" in (raw.get("data") or {}) and cfg.data.unlabeled is None:
        raise PipelineError("data.pseudo_conf sets the teacher's confidence for data.unlabeled images: add "
                            "data.unlabeled (a folder of your images), or drop pseudo_conf")
    s = cfg.student
    student = dataclasses.replace(
        s, imgsz=cfg.imgsz if s.imgsz is None else s.imgsz,
        freeze_bn=s.kind in ("prune", "weights") if s.freeze_bn is None else s.freeze_bn)
    return dataclasses.replace(cfg, student=student)


def load_pipeline(source: str | Path | dict) -> tuple[PipelineConfig, str]:
    """Read and check a pipeline recipe; return ``(config, recipe text as given)``.

    Relative paths in the file (data.yaml, teacher.weights, ...) stay relative to the current folder,
    like every other ``detdistill`` argument.
    """
    if isinstance(source, dict):
        return validate(source), yaml.safe_dump(source, sort_keys=False)
    if not isinstance(source, (str, Path)):
        raise PipelineError(f"a pipeline recipe is the path of its YAML or a mapping, got {type(source).__name__}")
    path = Path(source)
    if path.is_dir():
        raise PipelineError(f"{path} is a folder: pass the pipeline recipe YAML (a run's work folder is --workdir; "
                            "to resume a run, repeat its command)")
    if not path.is_file():
        raise PipelineError(f"pipeline recipe {path} does not exist; see `detdistill run --help` for an example")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PipelineError(f"{path} is not a text file (not UTF-8): pass a pipeline recipe YAML, e.g. "
                            "detdistill/pipeline/recipes/quickstart.yaml") from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as e:
        raise PipelineError(f"{path} is not valid YAML: {yaml_problem(e)}") from e
    return validate(raw or {}), text
