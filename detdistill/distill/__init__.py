"""Detection distillation on ultralytics YOLO: feature, logit and box distillers, recipes, trainer."""

from .api import check_inputs, fit, resume, train
from .classmap import ClassMap, ClassMapError, build_class_map
from .recipe import Recipe, RecipeError, load_recipe
from .teacher import TeacherError, load_teacher
from .trainer import DistillationTrainer

__all__ = [
    "ClassMap",
    "ClassMapError",
    "DistillationTrainer",
    "Recipe",
    "RecipeError",
    "TeacherError",
    "build_class_map",
    "check_inputs",
    "fit",
    "load_recipe",
    "load_teacher",
    "resume",
    "train",
]
