"""Detection distillation on ultralytics YOLO: feature, logit and box distillers, recipes, trainer."""

from .api import TrainJob, check_inputs, fit, resume, run_training, train
from ..data.class_map import ClassMap, ClassMapError, build_class_map
from .recipe import Recipe, RecipeError, load_recipe
from .student_trainer import StudentTrainer
from .teacher import TeacherError, load_teacher
from .trainer import DistillationTrainer

__all__ = [
    "ClassMap",
    "ClassMapError",
    "DistillationTrainer",
    "Recipe",
    "RecipeError",
    "StudentTrainer",
    "TeacherError",
    "TrainJob",
    "build_class_map",
    "check_inputs",
    "fit",
    "load_recipe",
    "load_teacher",
    "resume",
    "run_training",
    "train",
]
