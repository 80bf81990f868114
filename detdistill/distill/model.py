"""The training-time model: student + frozen teacher + distiller, as one module for ultralytics' trainer.

It subclasses ultralytics' ``DistillationModel`` so the trainer's own handling of a distillation
wrapper applies unchanged: the teacher is frozen and dropped from the EMA, and the final checkpoints
(``best.pt``, ``last.pt``) are stripped to the plain student. Everything else is detdistill's:
the head taps, the recipe's losses, class mapping, the schedule and fp32 loss math.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.utils.torch_utils import copy_attr

from ..data.class_map import ClassMap
from .distiller import Distiller
from .recipe import Recipe, RecipeError
from ..models import detect_head
from .taps import head_outputs, level_shift, probe_feature_channels
from .teacher import teacher_autocast, teacher_pool, teacher_runs_alongside


class KDModel(DistillationModel):
    """Student + teacher + :class:`Distiller`.

    ``forward(batch_dict)`` returns ``(loss_vector, loss_items)`` like a YOLO model's ``loss``: the
    student's own losses followed by one entry per KD loss, each also reported as ``kd_<name>`` (its
    own column in results.csv and the progress bar).
    A batch may carry ``img_clean`` (the images before a ``teacher_clean`` augmentation preset): the teacher then
    reads it while the student, its detection loss included, reads ``img`` (robustness distillation).
    ``forward(images)`` is the student's prediction. The distiller is stored as ``projector`` (the
    attribute name ultralytics' NaN-recovery restores) and exposed as ``distiller``.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, recipe: Recipe, class_map: ClassMap, kd_config: dict):
        nn.Module.__init__(self)  # the parent's __init__ builds its own projector and hooks, which we replace
        self.student_model = student
        self.teacher_model = teacher
        self.recipe = recipe
        self.kd_config = kd_config  # saved in checkpoints so `resume` can rebuild the teacher
        self.kd_names = [spec.name for spec in recipe.losses]
        s_head, t_head = detect_head(student), detect_head(teacher)
        if s_head.stride.tolist() != t_head.stride.tolist():
            raise ValueError(
                f"teacher strides {t_head.stride.tolist()} differ from the student's {s_head.stride.tolist()}: "
                "their anchors do not coincide; pick a student of the same pyramid (e.g. P3-P5 for both)"
            )
        shift = level_shift(recipe.teacher_scale, s_head.stride.tolist())
        if not shift and recipe.teacher_scale != 1.0 and any(spec.family == "box" for spec in recipe.losses):
            raise RecipeError(
                f"teacher_scale {recipe.teacher_scale:g}: box losses need the teacher's pyramid levels to line up with "
                f"the student's, which these strides {s_head.stride.tolist()} do not allow; drop the box loss"
            )
        self.projector = Distiller(
            recipe,
            probe_feature_channels(student),
            probe_feature_channels(teacher),
            int(s_head.reg_max),
            int(t_head.reg_max),
            class_map,
            shift,
        ).to(next(student.parameters()).device)
        copy_attr(self, student)
        self._freeze_teacher()
        if next(teacher.parameters()).device.type == "cpu":
            teacher.to(memory_format=torch.channels_last)  # oneDNN's fast convolution layout on CPU

    @property
    def distiller(self) -> Distiller:
        return self.projector

    # The parent captures features with forward hooks; the taps read the head's outputs instead.
    def _register_feature_hooks(self) -> None:
        pass

    def _remove_feature_hooks(self) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _teacher_forward(self, images: torch.Tensor):
        head = detect_head(self.teacher_model)
        scale = self.recipe.teacher_scale
        if scale != 1.0:
            stride = int(max(head.stride.tolist()))
            size = [max(stride, round(s * scale / stride) * stride) for s in images.shape[-2:]]
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        if images.device.type == "cpu":
            images = images.contiguous(memory_format=torch.channels_last)
        head.training = True  # this module only (its BN children stay in eval): return raw outputs, skip decoding
        try:
            with torch.no_grad(), teacher_autocast(images.device):
                return head_outputs(self.teacher_model(images), head)
        finally:
            head.training = False

    def loss(self, batch: dict, preds=None):
        """Student loss plus the KD losses (each scaled by the batch size, as ultralytics scales its own)."""
        if not self.training or self.teacher_model is None or self.distiller.factor == 0:
            if preds is None:
                preds = self.student_model(batch["img"])
            loss, items = self.student_model.loss(batch, preds)
            zeros = torch.zeros(len(self.kd_names), device=loss.device, dtype=loss.dtype)
            items.update({f"kd_{name}": zeros[i] for i, name in enumerate(self.kd_names)})
            return torch.cat([loss, zeros]), items

        images = batch["img"]
        # the teacher's own view: the image before augmentation when the trainer kept it (teacher_clean)
        seen = batch.get("img_clean", images)
        # On CPU the teacher runs on a core the trainer leaves idle while the student computes.
        pending = teacher_pool().submit(self._teacher_forward, seen) if teacher_runs_alongside(images.device) else None
        preds = self.student_model(images)
        loss, items = self.student_model.loss(batch, preds)
        teacher = self._teacher_forward(seen) if pending is None else pending.result()
        student = head_outputs(preds, detect_head(self.student_model))
        with torch.autocast(device_type=images.device.type, enabled=False):  # KD math in fp32
            kd = self.distiller(student.float(), teacher.float(), batch)
        kd_vector = torch.stack([kd[name] for name in self.kd_names]).to(loss.dtype)
        items.update({f"kd_{name}": kd[name].detach() for name in self.kd_names})
        return torch.cat([loss, kd_vector * images.shape[0]]), items
