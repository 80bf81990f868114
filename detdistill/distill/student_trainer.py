"""Training students whose architecture no model YAML can express (pruned models).

ultralytics rebuilds a ``.pt`` student from its ``model.yaml`` and copies over only the tensors whose
shapes match, which would silently drop a pruned model's weights (its layers are narrower than the
YAML's). :class:`StudentTrainer` trains such a model as it is, giving its head a new class count when
the dataset has other classes.

It can also keep BatchNorm statistics fixed (``StudentTrainer.with_frozen_bn()``): a student that inherits
its weights (pruned, or the teacher at another input size) was trained with population statistics, and
batch statistics of a few mosaic images drag them away on small datasets. This is the "frozen BN" of
detection fine-tuning (e.g. Detectron's FrozenBatchNorm2d for small per-GPU batches).

``StudentTrainer.with_options(augment="road")`` adds a road-domain augmentation preset
(:mod:`detdistill.data.road_augment`) to the training images, after ultralytics' own augmentation; validation
images stay clean. The preset is stored on the model (``train_augment``), so a resumed run keeps it.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK

from ..data.class_map import ClassMapError, resolve_class_map
from .. import atomic
from ..atomic import staged
from ..data.road_augment import attach, attached, check_augment
from ..models import class_names, detect_head


def _class_convs(head: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Every (branch, level) whose last layer is the class-score conv, one-to-many and one-to-one branches."""
    out = []
    for attr in ("cv3", "one2one_cv3"):
        branch = getattr(head, attr, None)
        if branch is not None:
            out += [(seq, i) for i, seq in enumerate(branch)]
    return out


def differs_from_yaml(model: nn.Module, reference: nn.Module) -> bool:
    """True when ``model`` has layers of other shapes than ``reference`` (built from its YAML).

    The class branch is left out: its width follows the class count, and ultralytics' own loading
    already carries it over to a new class count.
    """
    if (getattr(model, "yaml", None) or {}).get("pruned"):
        return True
    head = len(getattr(model, "model", [])) - 1
    class_branch = (f"model.{head}.cv3.", f"model.{head}.one2one_cv3.")
    ref = reference.state_dict()
    return any(
        key in ref and ref[key].shape != value.shape
        for key, value in model.state_dict().items()
        if not key.startswith(class_branch)
    )


def set_class_count(model: nn.Module, nc: int, sources: list[tuple[int, ...]] | None = None) -> None:
    """Give ``model``'s Detect head ``nc`` class outputs in place, keeping every other layer.

    ``sources[c]`` lists the old classes whose weights start new class ``c`` (their mean); classes
    without sources start from the usual prior, p = 5 objects / nc / cells (Lin et al., "Focal Loss
    for Dense Object Detection", ICCV 2017, sec. 4.1).
    """
    head = detect_head(model)
    if head.nc == nc:
        return
    for seq, level in _class_convs(head):
        old = seq[-1]
        new = nn.Conv2d(old.in_channels, nc, 1).to(old.weight.device, old.weight.dtype)
        stride = float(head.stride[level]) if head.stride.numel() else 8.0 * 2**level
        with torch.no_grad():
            new.bias.fill_(math.log(5 / nc / (640 / stride) ** 2))
            for c, src in enumerate(sources or []):
                if src:
                    new.weight[c] = old.weight[list(src)].mean(0)
                    new.bias[c] = old.bias[list(src)].mean()
        seq[-1] = new
    head.nc, head.no = nc, nc + head.reg_max * 4
    if isinstance(getattr(model, "yaml", None), dict):
        model.yaml["nc"] = nc


def _class_sources(model: nn.Module, data: dict) -> list[tuple[int, ...]] | None:
    """How the dataset's classes relate to the model's, when the data YAML or the names say so."""
    try:
        return list(resolve_class_map(class_names(model), data, None).sources)
    except ClassMapError:
        return None


class StudentTrainer(DetectionTrainer):
    """DetectionTrainer that trains a pruned ``.pt`` student as it is instead of rebuilding it from its YAML.

    Use as ``YOLO("pruned.pt").train(trainer=StudentTrainer, data=...)``; for other students it behaves
    exactly like DetectionTrainer. ``trainer=StudentTrainer.with_frozen_bn()`` also keeps the student's
    BatchNorm statistics fixed (BatchNorm layers in eval mode; their scale and shift still train).
    """

    freeze_bn: bool = False
    augment: str | None = None
    teacher_clean: bool = False  # KD only (see DistillationTrainer): the plain student has no teacher

    @classmethod
    def with_frozen_bn(cls, freeze_bn: bool = True) -> type:
        """A subclass whose student keeps its BatchNorm running statistics while training."""
        return cls.with_options(freeze_bn)

    @classmethod
    def with_options(cls, freeze_bn: bool = False, augment: str | None = None) -> type:
        """A subclass with frozen BatchNorm statistics (``freeze_bn``) and/or an augmentation preset for the training
        images (``augment``, e.g. ``"road"``; see :mod:`detdistill.data.road_augment`). The preset is checked here:
        an unknown name or a missing albumentations raises ``AugmentationError`` before any training."""
        augment = check_augment(augment)
        return type(cls.__name__, (cls,), {"freeze_bn": freeze_bn, "augment": augment, "__module__": cls.__module__})

    RECORD = "detdistill.yaml"  # in the run folder, beside ultralytics' args.yaml

    def run_record(self) -> dict[str, Any]:
        """What detdistill adds to this run beyond ultralytics' arguments, as written to :attr:`RECORD`."""
        return {"trainer": type(self).__name__, "teacher": None, "freeze_bn": bool(self.freeze_bn),
                "augment": self.augment, "teacher_clean": bool(self.teacher_clean)}

    def _setup_train(self):
        """ultralytics' setup; then the run folder gets :attr:`RECORD` (its args.yaml's ``augment`` is ultralytics'
        test-time augmentation, not the preset)."""
        result = super()._setup_train()
        if RANK in {-1, 0}:
            record = json.loads(json.dumps(self.run_record(), default=str))  # paths and tuples as YAML can read them
            atomic.write_text(Path(self.save_dir) / self.RECORD, yaml.safe_dump(record, sort_keys=False))
        return result

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        """ultralytics' dataset; the training split also gets the augmentation preset (validation stays clean)."""
        dataset = super().build_dataset(img_path, mode, batch)
        if mode == "train" and self.augment:
            attach(dataset, self.augment, keep_clean=self.teacher_clean)
            if RANK in {-1, 0}:
                LOGGER.info(f"detdistill: training images augmented with {attached(dataset)[0]!r}")
        return dataset

    def _close_dataloader_mosaic(self):
        """ultralytics' close_mosaic, which rebuilds the dataset's transforms; the preset is put back after them."""
        super()._close_dataloader_mosaic()
        if self.augment:
            attach(self.train_loader.dataset, self.augment, keep_clean=self.teacher_clean)

    def preprocess_batch(self, batch: dict) -> dict:
        """ultralytics' preprocessing; a clean copy of the images (``img_clean``, kept by a ``teacher_clean`` preset)
        is stacked, moved and scaled like ``img`` and resized to its size (``multi_scale``)."""
        clean = batch.pop("img_clean", None)
        batch = super().preprocess_batch(batch)
        if clean is not None:
            clean = torch.stack(list(clean)) if isinstance(clean, (list, tuple)) else clean
            clean = clean.to(self.device, non_blocking=self.device.type not in {"cpu", "mps"}).float() / 255
            if clean.shape[-2:] != batch["img"].shape[-2:]:
                clean = nn.functional.interpolate(clean, size=batch["img"].shape[-2:], mode="bilinear",
                                                  align_corners=False)
            batch["img_clean"] = clean
        return batch

    def setup_model(self):
        """ultralytics' setup; a resumed run takes its augmentation preset back from the checkpoint."""
        ckpt = super().setup_model()
        if self.resume and isinstance(ckpt, dict):
            model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
            stored = getattr(model, "train_augment", None)
            if stored:
                self.augment = stored.get("augment")
        return ckpt

    def set_model_attributes(self):
        """ultralytics' attributes, plus the augmentation preset (``train_augment``, kept in checkpoints)."""
        super().set_model_attributes()
        if self.augment:
            model = getattr(self.model, "student_model", self.model)
            model.train_augment = {"augment": self.augment}

    def _model_train(self):
        """Training mode (ultralytics' own, per epoch), with the student's BatchNorm in eval mode if frozen."""
        super()._model_train()
        if self.freeze_bn:
            model = getattr(self.model, "module", self.model)  # DDP
            for m in getattr(model, "student_model", model).modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def save_model(self):
        """ultralytics' save_model, with ``last.pt`` and ``best.pt`` written to temporary files and moved into
        place (``os.replace``): a run killed while saving keeps its previous, loadable checkpoints."""
        with staged(self.last) as last, staged(self.best) as best:
            final = self.last, self.best
            self.last, self.best = last, best
            try:
                return super().save_model()
            finally:
                self.last, self.best = final

    def resume_training(self, ckpt):
        """ultralytics' resume, less the ``results.csv`` rows of epochs that ended after the checkpoint: a run stopped
        between an epoch's row and its ``last.pt`` trains that epoch again, which would write its row twice."""
        super().resume_training(ckpt)
        if ckpt is not None and self.resume and RANK in {-1, 0}:
            drop_rows_after(self.csv, ckpt.get("epoch", -1) + 1)

    def get_model(self, cfg=None, weights=None, verbose=True):
        if not isinstance(weights, nn.Module):
            return super().get_model(cfg, weights, verbose)
        reference = super().get_model(cfg, None, verbose=False)
        if not differs_from_yaml(weights, reference):
            reference.load(weights, verbose=verbose)
            return reference
        model = copy.deepcopy(getattr(weights, "student_model", weights)).float().train()
        set_class_count(model, self.data["nc"], _class_sources(model, self.data))
        for p in model.parameters():
            p.requires_grad_(True)
        if verbose and RANK in {-1, 0}:
            n = sum(p.numel() for p in model.parameters())
            LOGGER.info(f"detdistill: training the pruned model as it is ({n / 1e6:.2f}M parameters)")
        return self.set_model_names_for_load(model)


def drop_rows_after(csv: Path, last_epoch: int) -> None:
    """Remove from ultralytics' ``results.csv`` the rows of epochs (its first column, counted from 1) after
    ``last_epoch``; a missing or unreadable file is left as it is."""
    try:
        header, *rows = csv.read_text(encoding="utf-8").splitlines()
        kept = [row for row in rows if float(row.split(",")[0]) <= last_epoch]
    except (OSError, ValueError):
        return
    if len(kept) < len(rows):
        atomic.write_text(csv, "\n".join([header, *kept]) + "\n")
