"""Library entry points: ``train`` a student with a teacher, ``resume`` an interrupted run.

Inputs are checked before any training starts, so a wrong teacher, data or recipe fails in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .classmap import ClassMap, build_class_map, spec_from_data
from .recipe import Recipe, load_recipe
from .teacher import TeacherError, class_names, load_teacher
from .trainer import DistillationTrainer


def _dataset(data: str | Path) -> dict:
    from ultralytics.data.utils import check_det_dataset

    try:
        return check_det_dataset(str(data))
    except Exception as e:
        raise ValueError(f"dataset {str(data)!r} could not be read: {e}") from e


def _check_student(student: str | Path) -> None:
    from ultralytics.nn.tasks import guess_model_task, load_checkpoint, yaml_model_load

    s = str(student)
    if s.endswith(".pt"):
        if not Path(s).is_file():
            raise FileNotFoundError(f"student checkpoint {s!r} does not exist")
        task = guess_model_task(load_checkpoint(s)[0])
    elif s.endswith((".yaml", ".yml")):
        try:
            task = guess_model_task(yaml_model_load(s))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"student model config {s!r} not found (e.g. yolov8n.yaml, yolo11n.yaml)") from e
    else:
        raise ValueError(f"student {s!r} must be a model YAML (e.g. yolov8n.yaml) or a .pt checkpoint")
    if task != "detect":
        raise ValueError(f"student {s!r} is a {task} model: detdistill trains detection students")


def check_inputs(
    student: str | Path, teacher: str | Path, data: str | Path, recipe: Any = None, class_map: dict | None = None
) -> tuple[Recipe, ClassMap]:
    """Validate every input of a distillation run; return the parsed recipe and class map."""
    recipe = load_recipe(recipe)
    _check_student(student)
    teacher_model = load_teacher(teacher, fuse=False)
    dataset = _dataset(data)
    names = dataset["names"]
    student_names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
    teacher_names = class_names(teacher_model)
    spec = class_map or spec_from_data(dataset, len(teacher_names))
    return recipe, build_class_map(teacher_names, student_names, spec)


def train(
    student: str | Path,
    teacher: str | Path,
    data: str | Path,
    recipe: Any = None,
    class_map: dict | None = None,
    **train_args: Any,
) -> Path:
    """Distill ``teacher`` into ``student`` on ``data``; return the path of the student-only ``best.pt``.

    Args:
        student: student model YAML (trained from scratch) or ``.pt`` (fine-tuned, e.g. a pruned teacher).
        teacher: trained ultralytics detection checkpoint.
        data: ultralytics dataset YAML.
        recipe: built-in recipe name, YAML path or mapping (default: ``default``).
        class_map: ``{student class: teacher class(es)}``; by default from the data YAML
            (``teacher_classes``/``coco_classes``) or by class name.
        **train_args: any ultralytics train argument (epochs, imgsz, batch, device, seed, ...).
    """
    from ultralytics import YOLO

    recipe_obj, _ = check_inputs(student, teacher, data, recipe, class_map)
    trainer_cls = DistillationTrainer.configure(teacher, recipe_obj, class_map)
    model = YOLO(str(student))
    model.train(trainer=trainer_cls, data=str(data), **train_args)
    return Path(model.trainer.best)


def resume(last: str | Path, **train_args: Any) -> Path:
    """Resume an interrupted distillation run from its ``last.pt`` (teacher and recipe come from the checkpoint)."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import load_checkpoint

    from .model import KDModel

    last = Path(last)
    if not last.is_file():
        raise FileNotFoundError(f"checkpoint {str(last)!r} does not exist (expected runs/.../weights/last.pt)")
    weights, _ = load_checkpoint(last)
    if not isinstance(weights, KDModel):
        raise ValueError(f"{str(last)!r} is not an unfinished detdistill run (finished runs hold only the student)")
    if not Path(weights.kd_config["teacher"]).is_file():
        raise TeacherError(f"the run's teacher {weights.kd_config['teacher']!r} is gone; put it back to resume")
    cfg = weights.kd_config
    trainer_cls = DistillationTrainer.configure(cfg["teacher"], cfg["recipe"], cfg.get("class_map"))
    model = YOLO(str(last))
    model.train(trainer=trainer_cls, resume=True, **train_args)
    return Path(model.trainer.best)
