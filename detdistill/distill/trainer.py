"""``DistillationTrainer``: ultralytics' DetectionTrainer with a frozen teacher and a recipe of KD losses.

Checkpoints are written atomically by :meth:`detdistill.distill.student_trainer.StudentTrainer.save_model`, which it inherits.
:func:`check_train_args` checks trainer arguments before any work starts.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics.cfg import check_cfg
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_DICT, LOGGER, RANK
from ultralytics.utils.torch_utils import select_device, unwrap_model

from .student_trainer import StudentTrainer
from ..data.road_augment import check_augment
from ..data.class_map import resolve_class_map
from .box import LocalizationDistillation
from .model import KDModel
from .qad import prepare_student
from .recipe import load_recipe
from ..models import MAX_STRIDE, class_names
from .teacher import load_teacher, teacher_path


class TrainArgumentError(ValueError):
    """A trainer argument that ultralytics does not know, or a value of the wrong type or range."""


EXTRA_TRAIN_KEYS = frozenset({"augmentations", "save_dir"})  # accepted by ultralytics beyond its cfg keys
# ultralytics settings that detdistill sets itself: given among the train arguments they would replace its own
# behind the user's back (model=) or clash with them (data=). Each way in (the CLI, train(), the pipeline) refuses
# them, naming where it sets each.
RESERVED_TRAIN_KEYS = frozenset({"model", "data", "resume", "distill_model", "quantize"})
# what ultralytics lets a resumed run change (BaseTrainer.check_resume), less the keys set by options
RESUME_OVERRIDES = frozenset({"imgsz", "batch", "device", "close_mosaic", "save_period", "workers", "cache", "patience",
                              "time", "freeze", "val", "plots", "channels_last"})
RESUMED_KEYS = ("augment", "teacher_clean")  # taken from the checkpoint's KD configuration on resume


def _closest(word: str, names: set[str]) -> list[str]:
    """The names closest to ``word`` (difflib), all of them where several are equally close."""
    close = difflib.get_close_matches(word, sorted(names), n=3)
    score = [difflib.SequenceMatcher(None, word, c).ratio() for c in close]
    return [c for c, r in zip(close, score) if r == score[0]]


def check_train_args(args: Mapping[str, Any], where: str = "", options: Collection[str] = ()) -> None:
    """Raise :class:`TrainArgumentError` for the first key of ``args`` that is not an ultralytics setting
    (``ultralytics.cfg.DEFAULT_CFG_DICT``), suggesting the closest valid one (or of ``options``, the caller's own
    keywords), or whose value ultralytics' own check refuses (type and range, e.g. ``epochs=-1``; a ``device``
    this machine lacks). ``where`` says where it was given."""
    valid = set(DEFAULT_CFG_DICT) | EXTRA_TRAIN_KEYS
    for key in args:
        if key == "augment":  # ultralytics' test-time augmentation: a predict/val setting, and detdistill's option name
            raise TrainArgumentError(f"training argument 'augment'{where} is ultralytics' test-time augmentation, which "
                                     "training does not use; for road-domain augmentation use --augment road "
                                     "(pipeline: distill.augment)")
        if key in valid:
            continue
        close = _closest(str(key), valid | set(options))
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else \
            "see https://docs.ultralytics.com/modes/train/#train-settings"
        raise TrainArgumentError(f"unknown training argument {key!r}{where} ({hint})")
    try:
        check_cfg({k: v for k, v in args.items() if k in DEFAULT_CFG_DICT})  # ultralytics' own type and range checks
    except (TypeError, ValueError) as e:
        raise TrainArgumentError(f"invalid training argument{where}: {e}") from None
    _check_unchecked(args, where)
    if args.get("device") not in (None, ""):
        try:
            select_device(str(args["device"]), verbose=False)  # ultralytics' check: the GPU must exist here
        except ValueError as e:
            raise TrainArgumentError(f"device={args['device']}{where}: {str(e).splitlines()[0]}") from None


# values ultralytics' check_cfg lets through and its trainer refuses (or bends) later: the optimizers its
# build_optimizer knows (matched ignoring case), the cache modes, workers and imgsz, a whole number of pixels
# and a multiple of the stride
CACHE_MODES = ("ram", "disk")  # with True and False; ultralytics takes any other text as no cache
OPTIMIZERS = ("SGD", "MuSGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "auto")


def _check_unchecked(args: Mapping[str, Any], where: str) -> None:
    """Raise :class:`TrainArgumentError` for an ``optimizer`` ultralytics does not know, a ``cache`` mode it
    ignores, a ``batch`` that is no whole number (nor AutoBatch's -1 or GPU memory share), a negative ``workers``
    or an ``imgsz`` that is not a positive whole number (ultralytics fails on the optimizer after the data is
    loaded, on ``batch=1.5`` and ``workers=-1`` in its dataloader, on ``imgsz=1e3`` at the model, trains
    ``imgsz=-1`` at 32 with a warning and ``cache=maybe`` without a cache)."""
    name = args.get("optimizer")
    if name is not None and str(name).lower() not in {o.lower() for o in OPTIMIZERS}:
        close = _closest(str(name), set(OPTIMIZERS))
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise TrainArgumentError(f"optimizer={name}{where} is not an ultralytics optimizer ({hint}one of "
                                 f"{', '.join(OPTIMIZERS)})")
    cache = args.get("cache")
    if cache is not None and not isinstance(cache, bool) and str(cache).lower() not in CACHE_MODES:
        raise TrainArgumentError(f"cache={cache}{where}: ultralytics caches images with cache=ram or cache=disk; "
                                 "cache=False (the default) reads them from their files")
    batch = args.get("batch")
    if batch is not None and not (isinstance(batch, int) and not isinstance(batch, bool) and (batch >= 1 or batch == -1)
                                  or isinstance(batch, float) and 0 < batch < 1):
        raise TrainArgumentError(f"batch={batch}{where}: give the images per batch as a whole number, e.g. batch=16 "
                                 "(or -1, or a fraction such as 0.7, for ultralytics' AutoBatch to fill that share of "
                                 "the GPU memory)")
    workers = args.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise TrainArgumentError(f"workers={workers}{where}: give the number of dataloader processes as a whole "
                                 "number, 0 or more (0 loads in the training process), e.g. workers=2")
    size = args.get("imgsz")
    sizes = size if isinstance(size, (list, tuple)) else [size]  # a list: ultralytics trains at its largest
    if size is not None and not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        raise TrainArgumentError(f"imgsz={size}{where}: give the training image size as a whole number of pixels, "
                                 "e.g. imgsz=640")
    odd = [v for v in sizes if v % MAX_STRIDE] if size is not None else []
    if odd:  # ultralytics would train at the next multiple, which val, export and the pipeline then refuse
        rounded = -(-odd[0] // MAX_STRIDE) * MAX_STRIDE
        raise TrainArgumentError(f"imgsz={size}{where} is not a multiple of the models' stride {MAX_STRIDE} "
                                 f"(ultralytics would train at {rounded}): pass e.g. imgsz={rounded}")


@contextmanager
def dropped_log_lines(logger: logging.Logger, prefix: str) -> Iterator[None]:
    """Within the block, ``logger`` drops the records whose message starts with ``prefix``."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _built_as(kind: str, loss: nn.Module) -> str:
    """A recipe's loss type as built: ``box`` names what it became for this pair (``ld`` where both heads have DFL
    with one reg_max, ``box_decoded`` otherwise)."""
    if kind != "box":
        return kind
    first = loss[0] if isinstance(loss, nn.ModuleList) else loss
    return f"box -> {'ld' if isinstance(first, LocalizationDistillation) else 'box_decoded'}"


def _update_schedule(trainer: DistillationTrainer) -> None:
    """Callback at each epoch start: apply the recipe's schedule factor to every KD loss."""
    model = unwrap_model(trainer.model)
    if isinstance(model, KDModel):
        factor = model.recipe.schedule.factor(trainer.epoch, trainer.epochs, trainer.args.close_mosaic)
        model.distiller.factor = factor
        if RANK in {-1, 0}:
            LOGGER.info(f"detdistill: KD weight factor {factor:.3f} at epoch {trainer.epoch + 1}")


class DistillationTrainer(StudentTrainer):
    """Trains a student YOLO detector with a frozen teacher.

    The KD configuration (``teacher`` path, ``recipe`` mapping, ``class_map`` spec, ``int8``) comes from the
    ``kd_config`` argument or class attribute; :meth:`configure` makes a subclass carrying it, for use
    as ``YOLO(student).train(trainer=DistillationTrainer.configure(...), ...)`` and for DDP workers,
    which rebuild the trainer from its class. On ``resume`` it is read back from the checkpoint.

    With ``int8`` (or ultralytics' ``quantize=8``) the student trains with INT8 fake quantization
    (:mod:`detdistill.distill.qad`): it is quantized before the teacher wraps it, so only the student is.

    With ``augment`` (a preset of :mod:`detdistill.data.road_augment`) the training images are corrupted; with
    ``teacher_clean`` as well, the teacher reads the clean image and the student (its detection loss included)
    the corrupted one, as in robustness distillation.
    """

    kd_config: dict[str, Any] | None = None

    def __init__(self, cfg=DEFAULT_CFG, overrides=None, _callbacks=None, kd_config: dict[str, Any] | None = None):
        super().__init__(cfg, overrides, _callbacks)
        if kd_config is not None:
            self.kd_config = kd_config
        if self.args.quantize == 8:  # ultralytics' QAT switch: here the student alone is quantized (see qad)
            self.kd_config = {**(self.kd_config or {}), "int8": True}
            self.args.quantize = None  # keeps ultralytics from quantizing the teacher-and-student wrapper too
        self._kd_resume_state: dict | None = None
        self._qad_state: dict | None = None  # a resumed QAD run's quantizer ranges
        if _update_schedule not in self.callbacks["on_train_epoch_start"]:  # DDP workers get pickled callbacks
            self.add_callback("on_train_epoch_start", _update_schedule)

    @classmethod
    def configure(
        cls, teacher: str | Path, recipe: Any = None, class_map: dict | str | None = None, freeze_bn: bool = False,
        int8: bool = False, augment: str | None = None, teacher_clean: bool = False,
    ) -> type[DistillationTrainer]:
        """A subclass with the KD configuration baked in (picklable for DDP). ``freeze_bn``: keep the student's
        BatchNorm statistics fixed (see :class:`~detdistill.distill.student_trainer.StudentTrainer`); ``int8``: quantization-aware
        distillation (:mod:`detdistill.distill.qad`); ``augment``: an augmentation preset for the training images
        (e.g. ``"road"``); ``teacher_clean``: the teacher reads the images before the preset, the student after it.
        All are kept on resume. A bad preset (or ``teacher_clean`` without one) raises ``AugmentationError`` here."""
        augment = check_augment(augment, teacher_clean)
        kd_config = {
            "teacher": str(teacher_path(teacher).resolve()),
            "recipe": load_recipe(recipe).to_dict(),
            "class_map": class_map,
            "freeze_bn": freeze_bn,
            "int8": int8,
            "augment": augment,
            "teacher_clean": bool(teacher_clean),
        }
        return type(cls.__name__, (cls,), {"kd_config": kd_config, "__module__": cls.__module__})

    @property
    def freeze_bn(self) -> bool:
        """Whether the student's BatchNorm statistics stay fixed: part of the KD configuration (kept on resume)."""
        return bool((self.kd_config or {}).get("freeze_bn", False))

    @property
    def augment(self) -> str | None:
        """The training images' augmentation preset: part of the KD configuration (kept on resume)."""
        return (self.kd_config or {}).get("augment")

    @augment.setter
    def augment(self, value: str | None) -> None:
        self.kd_config = {**(self.kd_config or {}), "augment": value}

    @property
    def teacher_clean(self) -> bool:
        """Whether the teacher reads the images before the augmentation preset (kept on resume)."""
        return bool((self.kd_config or {}).get("teacher_clean", False)) and bool(self.augment)

    def setup_model(self):
        """Build the student; on resume, from the KDModel in ``last.pt`` (its teacher is rebuilt from the path)."""
        if isinstance(self.model, nn.Module) or not str(self.model).endswith(".pt") or not self.resume:
            return super().setup_model()
        weights, ckpt = load_checkpoint(self.model)
        if not isinstance(weights, KDModel):
            return super().setup_model()
        self.kd_config = self.kd_config or weights.kd_config
        # the run's augmentation goes on as it started, whichever trainer resumes it
        stored = {k: weights.kd_config[k] for k in RESUMED_KEYS if k in weights.kd_config}
        self.kd_config = {**self.kd_config, **stored}
        self._kd_resume_state = weights.projector.state_dict()
        self._qad_state = ckpt.get("modelopt")
        self.model = self.get_model(cfg=weights.student_model.yaml, weights=weights.student_model, verbose=RANK in {-1, 0})
        return ckpt

    def run_record(self) -> dict[str, Any]:
        """The student's record, plus the teacher, the recipe, the class map and whether it is QAD."""
        cfg = self.kd_config or {}
        return {**super().run_record(), "teacher": cfg.get("teacher"), "recipe": cfg.get("recipe"),
                "class_map": cfg.get("class_map"), "int8": bool(cfg.get("int8"))}

    def _setup_train(self):
        """ultralytics' setup, without its one "Freezing layer" line per teacher parameter (a hundred or more): the
        teacher is frozen, which the line that names it already says."""
        with dropped_log_lines(LOGGER, "Freezing layer 'teacher_model."):
            return super()._setup_train()

    def set_model_attributes(self):
        """Set the student's dataset attributes, then wrap it with the teacher and the distiller."""
        super().set_model_attributes()
        if isinstance(unwrap_model(self.model), KDModel):
            return
        if not self.kd_config:
            raise ValueError("DistillationTrainer needs a teacher: use DistillationTrainer.configure(teacher, recipe)")
        cfg = self.kd_config
        teacher = load_teacher(cfg["teacher"], self.device)
        class_map = resolve_class_map(class_names(teacher), self.data, cfg.get("class_map"))
        recipe = load_recipe(cfg["recipe"])
        if cfg.get("int8"):
            self.model = prepare_student(self, self.model, self._qad_state)
        self.args.compile = False  # the teacher runs eagerly beside the student
        self.model = KDModel(self.model, teacher, recipe, class_map, cfg)
        weight = next(p for p in self.model.student_model.parameters() if p.ndim == 4)
        if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
            self.model.to(memory_format=torch.channels_last)  # the trainer converted the student (CUDA): match it
        if self._kd_resume_state is not None:
            self.model.projector.load_state_dict(self._kd_resume_state)
            self.model.projector.adapters_fitted = True  # the checkpoint's adapters, already trained
        if RANK in {-1, 0}:
            losses = ", ".join(f"{s.name}({_built_as(s.type, self.model.distiller.losses[s.name])}, w={s.weight:g})"
                               for s in recipe.losses)
            LOGGER.info(f"detdistill: teacher {cfg['teacher']} (frozen); losses {losses}; schedule {recipe.schedule}")
            if self.augment:
                LOGGER.info(f"detdistill: augmentation {self.augment!r}; the teacher reads the "
                            f"{'clean' if self.teacher_clean else 'augmented'} images, the student the augmented ones")
            if not class_map.is_identity:
                LOGGER.info(f"detdistill: class map {class_map.describe()}")
