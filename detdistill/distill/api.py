"""Library entry points: ``train`` a student with a teacher, ``resume`` an interrupted run, and
:func:`run_training`, the one entry point of ``detdistill train`` and ``detdistill run``.

Inputs are checked before any training starts, so a wrong teacher, data or recipe fails in seconds.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, guess_model_task, yaml_model_load
from ultralytics.utils import DEFAULT_CFG

from ..data.class_map import ClassMap, resolve_class_map
from ..data.road_augment import check_augment
from ..data.unlabeled import PSEUDO_CONF, add_unlabeled
from ..models import CHECKPOINT_FIX, class_names, load_detection_checkpoint
from ..file_checks import require_present
from .dataset_check import check_dataset, dataset_named
from .model import KDModel
from .qad import SELF_RECIPE, require_modelopt
from .recipe import Recipe, load_recipe
from .student_trainer import StudentTrainer, set_class_count
from .teacher import Int8TeacherError, TeacherError, load_teacher
from .trainer import DistillationTrainer, TrainArgumentError, check_train_args


def model_config(source: str | Path, role: str = "student") -> dict | None:
    """The detection model YAML ``source`` as ultralytics reads it, or None for a ``.pt`` that exists; a
    ``FileNotFoundError`` or ``ValueError`` naming ``role`` and the fix for anything else (a missing file, a
    dataset YAML, a segmentation YAML, another kind of file)."""
    s = str(source)
    if s.endswith(".pt"):
        require_present(s, f"{role} checkpoint", CHECKPOINT_FIX)
        return None
    if not s.endswith((".yaml", ".yml")):
        raise ValueError(f"{role} {s!r} must be a model YAML (e.g. yolov8n.yaml) or a .pt checkpoint")
    try:
        cfg = yaml_model_load(s)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{role} model config {s!r} not found (e.g. yolov8n.yaml, yolo11n.yaml)") from e
    if not {"backbone", "head"} <= set(cfg):
        raise ValueError(f"{role} {s!r} is not a model YAML (it has no backbone: and head: sections): give a model "
                         "YAML such as yolov8n.yaml or a trained .pt; a dataset YAML is the data (--data), not a model")
    if guess_model_task(cfg) != "detect":
        raise ValueError(f"{role} {s!r} is a {guess_model_task(cfg)} model: detdistill trains detection models")
    return cfg


def _student_model(student: str | Path, nc: int):
    """Build (YAML) or load (.pt) the student, checking that it is a detection model."""
    cfg = model_config(student)
    model = load_detection_checkpoint(student, role="student")[0] if cfg is None else \
        DetectionModel(cfg, nc=nc, verbose=False)
    if guess_model_task(model) != "detect":
        raise ValueError(f"student {str(student)!r} is a {guess_model_task(model)} model: detdistill trains "
                         "detection models")
    set_class_count(model, nc)  # as training will (a .pt trained on other classes gets a new class layer)
    return model


def check_inputs(
    student: str | Path, teacher: str | Path, data: str | Path, recipe: Any = None, class_map: dict | str | None = None,
    single_cls: bool = False,
) -> tuple[Recipe, ClassMap]:
    """Validate every input of a distillation run; return the parsed recipe and class map (``single_cls``: of the
    one class ultralytics then trains).

    Builds the training-time model once on CPU, so a teacher/student pair that cannot be distilled
    with this recipe (feature levels, strides, DFL bins) fails here rather than on the first step.
    """
    for name, value, what in (("student", student, "a model YAML or a trained .pt"),
                              ("teacher", teacher, "a trained .pt or a registry name"), ("data", data, "a dataset YAML")):
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise ValueError(f"{name} is {'empty' if isinstance(value, str) else repr(value)}: pass {what}")
    recipe = load_recipe(recipe)
    teacher_model = load_teacher(teacher)
    dataset = check_dataset(data)
    if single_cls:  # as ultralytics' trainer names the classes then
        dataset = {**dataset, "names": {0: SINGLE_CLASS}, "nc": 1}
    channels = int(dataset.get("channels", 3))
    if channels != teacher_model.yaml.get("channels", 3):
        raise ValueError(f"the dataset has {channels}-channel images but the teacher takes "
                         f"{teacher_model.yaml.get('channels', 3)}: distill with a teacher trained on such images")
    cm = resolve_class_map(class_names(teacher_model), dataset, class_map)
    KDModel(_student_model(student, len(cm.student_names)), teacher_model, recipe, cm, {})
    return recipe, cm


def fit(student: str | Path, teacher: str | Path, data: str | Path, recipe: Recipe, class_map: dict | str | None = None,
        freeze_bn: bool = False, int8: bool = False, augment: str | None = None, teacher_clean: bool = False,
        **train_args: Any) -> Path:
    """Train with inputs already validated by :func:`check_inputs`; return the student-only ``best.pt``.
    ``int8``: quantization-aware distillation (:mod:`detdistill.distill.qad`); ``augment``: a training
    augmentation preset (:mod:`detdistill.data.road_augment`), ``teacher_clean``: the teacher sees the image
    before it."""
    model = YOLO(str(student))
    trainer = DistillationTrainer.configure(teacher, recipe, class_map, freeze_bn, int8, augment, teacher_clean)
    model.train(trainer=trainer, data=str(data), **train_args)
    return Path(model.trainer.best)


# ultralytics train keys that train()'s own arguments set: given in **train_args they would train something else
SET_BY_ARGUMENTS = {"model": "student", "data": "data", "distill_model": "teacher (and recipe)",
                    "quantize": "int8=True", "resume": "resume(last) instead of train()"}
TRAIN_OPTIONS = ("recipe", "class_map", "freeze_bn", "int8", "augment", "teacher_clean")


def train(
    student: str | Path,
    teacher: str | Path | None,
    data: str | Path,
    recipe: Any = None,
    class_map: dict | str | None = None,
    freeze_bn: bool = False,
    *,
    int8: bool = False,
    augment: str | None = None,
    teacher_clean: bool = False,
    **train_args: Any,
) -> Path:
    """Distill ``teacher`` into ``student`` on ``data``; return the path of the student-only ``best.pt``.

    Every input is checked as ``detdistill train`` checks it, before anything trains.

    Args:
        student: student model YAML (trained from scratch) or ``.pt`` (fine-tuned, e.g. a pruned teacher).
        teacher: trained ultralytics detection checkpoint; None with ``int8``: the student's own ``.pt`` (QAD
            from its FP32 weights, under the ``logit-box`` recipe unless ``recipe`` names another).
        data: ultralytics dataset YAML.
        recipe: built-in recipe name, YAML path or mapping (default: ``default``).
        class_map: ``{student class: teacher class(es)}`` (or the CLI's ``'Bus=bus;Ambulance=car,truck'``); by
            default from the data YAML (``teacher_classes``/``coco_classes``) or by class name.
        freeze_bn: keep the student's BatchNorm statistics fixed (for students that inherit weights and
            small datasets; see :class:`detdistill.distill.student_trainer.StudentTrainer`).
        int8: quantization-aware distillation of a trained ``.pt`` student (:mod:`detdistill.distill.qad`).
        augment: a training augmentation preset (``"road"``, :mod:`detdistill.data.road_augment`);
            ``teacher_clean``: the teacher sees each image before it.
        **train_args: ultralytics train arguments (epochs, imgsz, batch, device, seed, ...), checked as
            ``detdistill train`` checks them; ``model``, ``data``, ``distill_model``, ``quantize`` and ``resume``
            are refused (this function's own arguments set them).
    """
    for key in sorted(SET_BY_ARGUMENTS.keys() & train_args.keys()):
        raise TrainArgumentError(f"{key}={train_args[key]!r} is set by train()'s {SET_BY_ARGUMENTS[key]}: "
                                 "use that instead")
    check_train_args(train_args, options=TRAIN_OPTIONS)
    return run_training(TrainJob(student=student, data=data, teacher=teacher, recipe=recipe, class_map=class_map,
                                 freeze_bn=freeze_bn, int8=int8, augment=augment, teacher_clean=teacher_clean,
                                 train_args=train_args))


def resume_config(last: str | Path) -> dict[str, Any]:
    """The KD configuration of an unfinished run's ``last.pt``, checked so that it can be resumed."""
    last = Path(last)
    if last.is_dir():
        raise FileNotFoundError(f"{str(last)!r} is a folder: pass the run's checkpoint, e.g. --resume "
                                f"{last / 'weights' / 'last.pt'}")
    if not last.is_file():
        raise FileNotFoundError(f"checkpoint {str(last)!r} does not exist (expected runs/.../weights/last.pt)")
    if last.suffix != ".pt":
        raise ValueError(f"{str(last)!r} is not a checkpoint: pass the .pt of an interrupted run, "
                         "runs/.../weights/last.pt")
    weights, _ = load_detection_checkpoint(last, role="checkpoint")
    if not isinstance(weights, KDModel):
        raise ValueError(f"{str(last)!r} is not the checkpoint of an interrupted `detdistill train`: it holds no "
                         "distillation state (a finished run's checkpoints, and other ultralytics checkpoints, hold "
                         "only the model); start a new run with --student instead")
    if not Path(weights.kd_config["teacher"]).is_file():
        raise TeacherError(f"the run's teacher {weights.kd_config['teacher']!r} is gone; put it back to resume")
    return weights.kd_config


def resume(last: str | Path, kd_config: dict[str, Any] | None = None, **train_args: Any) -> Path:
    """Resume an interrupted distillation run from its ``last.pt`` (teacher and recipe come from the checkpoint)."""
    cfg = kd_config or resume_config(last)
    model = YOLO(str(last))
    model.train(
        trainer=DistillationTrainer.configure(cfg["teacher"], cfg["recipe"], cfg.get("class_map"),
                                              cfg.get("freeze_bn", False), cfg.get("int8", False)), resume=True,
        **train_args,
    )
    return Path(model.trainer.best)


SINGLE_CLASS = "item"  # the class name ultralytics gives every object with single_cls=True

# INT8 fine-tuning from trained weights takes a small learning rate: NVIDIA's QAT guidance starts at about 1% of the
# initial training rate (ultralytics' lr0 0.01 -> 1e-4); ultralytics' optimizer=auto picks AdamW at about 1e-3 for a
# short run, too high for a trained student (docs/benchmarks.md). Set by the user, each of these keys wins.
INT8_FINE_TUNE = {"optimizer": "SGD", "lr0": 1e-4, "warmup_epochs": 0}


class TrainInputError(ValueError):
    """An input of a training job (teacher, student, data, recipe, class map, run folder) that cannot be used."""


@dataclass
class TrainJob:
    """One training run, as :func:`run_training` starts, resumes or reuses it.

    Without ``teacher`` the student trains plainly (:class:`StudentTrainer`); with one it is distilled
    (``int8``: quantization-aware distillation). ``run_dir`` pins the run folder (``project``/``name``): an
    interrupted run there resumes from its ``last.pt`` and a finished one is reused. ``resume`` is an
    interrupted distillation's ``last.pt`` to carry on from (its teacher and recipe come from the checkpoint).
    ``unlabeled`` images are labelled by the teacher into ``<project>/<name>-unlabeled`` and join the training split.
    An ``int8`` job without a teacher takes the student's own ``.pt`` as its teacher, under :data:`SELF_RECIPE`
    unless ``recipe`` names another.
    """

    student: str | Path | None = None  # model YAML (from scratch) or .pt (fine-tuned)
    data: str | Path | None = None
    teacher: str | Path | None = None
    recipe: Any = None  # KD recipe name, YAML path or mapping; None: "default"
    class_map: dict | str | None = None  # a mapping, or the CLI's text form
    freeze_bn: bool = False
    int8: bool = False
    augment: str | None = None  # training augmentation preset (detdistill.data.road_augment), e.g. "road"
    teacher_clean: bool = False  # with a teacher and a preset: the teacher sees the image before the preset
    unlabeled: Path | None = None
    pseudo_conf: float = PSEUDO_CONF
    run_dir: Path | None = None
    resume: Path | None = None
    train_args: dict[str, Any] = field(default_factory=dict)  # ultralytics train arguments

    def __post_init__(self) -> None:
        for name in ("unlabeled", "run_dir", "resume"):  # a folder or file given as text
            if isinstance(getattr(self, name), str):
                setattr(self, name, Path(getattr(self, name)))
        if self.int8 and self.teacher is None and self.resume is None and \
                Path(str(self.student)).suffix.lower() == ".pt":  # QAD from the student's own FP32 weights
            self.teacher, self.recipe = self.student, self.recipe or SELF_RECIPE
        if not isinstance(self.train_args, dict):
            raise TrainInputError(f"train_args is a mapping of ultralytics train arguments, e.g. {{'epochs': 10}}, "
                                  f"got {type(self.train_args).__name__}")

    @property
    def self_teacher(self) -> bool:
        """Whether the student's own weights teach it (QAD from its FP32 checkpoint)."""
        return self.int8 and self.teacher is not None and str(self.teacher) == str(self.student)

    def args(self) -> dict[str, Any]:
        """The ultralytics train arguments, with ``run_dir`` as project/name when it is pinned; an ``int8`` job
        fine-tunes with :data:`INT8_FINE_TUNE` for each of its keys the user did not set."""
        args = {**INT8_FINE_TUNE, **self.train_args} if self.int8 else dict(self.train_args)
        if self.run_dir is None:
            return args
        return {**args, "project": str(self.run_dir.parent), "name": self.run_dir.name, "exist_ok": True}


def run_training(job: TrainJob) -> Path:
    """Run ``job``; return the path of its student-only ``best.pt``.

    A finished run in ``job.run_dir`` is reused and an interrupted one resumed. Otherwise every input is checked
    first: a bad one raises :class:`TrainInputError` (naming it) before anything trains.
    """
    check_train_args(job.train_args)
    if job.resume is not None:
        return _resume_kd(Path(job.resume), job)
    if job.run_dir is not None:
        best, last = job.run_dir / "weights" / "best.pt", job.run_dir / "weights" / "last.pt"
        if finished_run(job.run_dir):
            return best
        if last.is_file():
            return _resume_kd(last, job) if job.teacher is not None else _resume_plain(last, job)

    recipe = check_job(job)
    with dataset_named(job.data, TrainInputError):
        if recipe is None:
            return _fit_plain(job)  # StudentTrainer.with_options checks the augmentation preset
        try:
            data = _with_unlabeled(job) if job.unlabeled is not None else job.data
        except (FileNotFoundError, ValueError) as e:
            _raise_as_input_error(e)
        return fit(job.student, job.teacher, data, recipe, job.class_map or None, job.freeze_bn, job.int8,
                   job.augment, job.teacher_clean, **job.args())


def check_job(job: TrainJob) -> Recipe | None:
    """Check the inputs of a new run of ``job`` without training anything; return its parsed recipe (None for a
    run without a teacher). A bad input raises :class:`TrainInputError`, or detdistill's error naming it."""
    missing = [name for name in ("student", "data") if getattr(job, name) is None]
    if missing:
        raise TrainInputError(f"the training job has no {' and no '.join(missing)}: give student (a model YAML such as "
                              "yolov8n.yaml, or a trained .pt) and data (a dataset YAML)")
    if job.freeze_bn and str(job.student).endswith((".yaml", ".yml")):
        raise TrainInputError(f"--freeze-bn keeps a trained student's BatchNorm statistics, and {job.student} is built "
                              "from a YAML with none to keep: drop --freeze-bn (pipeline: student.freeze_bn)")
    suffix = Path(str(job.student)).suffix.lower()
    if job.int8 and suffix in (".yaml", ".yml"):
        raise TrainInputError(
            f"--int8 fine-tunes a trained student, and {job.student} has no trained weights: fake quantization "
            "calibrated on random weights does not train. Train it in float first, then fine-tune its best.pt: "
            "`detdistill train --student .../weights/best.pt --teacher T.pt --data D.yaml --int8 epochs=3`")
    if job.int8 and suffix != ".pt":
        raise TrainInputError(f"--int8 fine-tunes a trained ultralytics .pt student, and {job.student} is not one: "
                              "pass the .pt it was trained as (an exported model cannot be trained)")
    if job.teacher is None:
        if job.unlabeled is not None or job.teacher_clean:
            need = "unlabeled images" if job.unlabeled is not None else "teacher_clean"
            raise TrainInputError(f"{need} needs a teacher: give one")
        return None
    if job.int8:
        require_modelopt()
    if job.self_teacher:  # a missing student is named as the student, not looked up as a teacher
        try:
            model_config(job.student)
        except FileNotFoundError as e:
            raise TrainInputError(str(e)) from None
    check_augment(job.augment, job.teacher_clean)
    args = job.args()
    try:
        recipe = check_inputs(job.student, job.teacher, job.data, job.recipe, job.class_map or None,
                              bool(args.get("single_cls")))[0]
    except Int8TeacherError as e:
        if not job.self_teacher:
            raise
        raise TrainInputError(f"the student {job.student} is already INT8 fine-tuned, so it cannot be its own teacher "
                              "(a teacher supervises in float): pass the float checkpoint it was fine-tuned from with "
                              "--teacher (its run folder's detdistill.yaml names that run's teacher)") from e
    except (FileNotFoundError, ValueError) as e:
        _raise_as_input_error(e)
    epochs = int(args.get("epochs", DEFAULT_CFG.epochs))
    if recipe.schedule.off_throughout(epochs, int(args.get("close_mosaic", DEFAULT_CFG.close_mosaic))):
        raise TrainInputError(f"the recipe's schedule.stop_last ({recipe.schedule.stop_last}) turns KD off for all "
                              f"{epochs} epochs, so nothing would be distilled: train more epochs, or lower stop_last")
    return recipe


def _raise_as_input_error(e: Exception) -> NoReturn:
    """Raise ``e`` itself when detdistill raised it (TeacherError, RecipeError, ...: they name the input), else
    a :class:`TrainInputError` with its message."""
    if type(e).__module__.startswith("detdistill."):
        raise e
    raise TrainInputError(str(e)) from e


def finished_run(run_dir: Path) -> bool:
    """True when ``run_dir`` holds a finished ultralytics run (its last.pt was stripped of the optimizer)."""
    last = Path(run_dir) / "weights" / "last.pt"
    if not last.is_file():
        return False
    try:
        return torch.load(last, map_location="cpu", weights_only=False).get("optimizer") is None
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise TrainInputError(f"{last} is not a loadable checkpoint (truncated or corrupted: {str(e).split('.')[0]}); "
                              f"delete {run_dir} and rerun to train this stage again") from e


def _resume_kd(last: Path, job: TrainJob) -> Path:
    """Carry on with a distillation; only an explicit ``job.resume`` passes ``train_args`` (e.g. a smaller batch):
    a pinned run folder resumes the run as it started."""
    try:
        config = resume_config(last)
    except (FileNotFoundError, ValueError) as e:
        _raise_as_input_error(e)
    return resume(last, config, **(job.train_args if job.resume is not None else {}))


def _resume_plain(last: Path, job: TrainJob) -> Path:
    YOLO(str(last)).train(trainer=StudentTrainer.with_frozen_bn(job.freeze_bn), resume=True)
    return last.parent / "best.pt"


def _fit_plain(job: TrainJob) -> Path:
    model = YOLO(str(job.student))
    model.train(trainer=StudentTrainer.with_options(job.freeze_bn, job.augment), data=str(job.data), **job.args())
    return job.run_dir / "weights" / "best.pt" if job.run_dir is not None else Path(model.trainer.best)


def _with_unlabeled(job: TrainJob) -> Path:
    """Label ``job.unlabeled`` with the teacher; return the dataset YAML whose train split includes them."""
    images = Path(job.unlabeled)
    if not images.exists():
        raise FileNotFoundError(f"--unlabeled {images} does not exist: pass a folder of images (or a .txt list)")
    args = job.args()
    workdir = Path(args.get("project") or "runs/detect") / f"{args.get('name') or 'train'}-unlabeled"
    return add_unlabeled(job.data, job.teacher, images, workdir, job.class_map or None, job.pseudo_conf,
                         int(args.get("imgsz") or 640), args.get("device"))
