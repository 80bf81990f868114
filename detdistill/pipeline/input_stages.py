"""The stages before the students train: the dataset, the teacher, teacher labels for unlabeled images, and the
student to start from (a model YAML, a checkpoint, a width multiple of the teacher's family, or the pruned
teacher)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..data.class_map import resolve_class_map
from ..data.coco_subset import chosen_classes, make_coco_subset
from ..data.dataset import read_data_yaml
from ..data.unlabeled import add_unlabeled
from ..models import class_names, load_detection_checkpoint
from ..prune import PruneConfig, prune_checkpoint
from ..registry.weights import WeightsError, offline, resolve_weights
from .config import PipelineConfig
from .context import StageContext
from .dataset_files import DataInput
from .schema import PipelineError, as_dict, read_from


def dataset(ctx: StageContext) -> Path:
    """The data YAML: the recipe's own, or one generated (shapes) or built (COCO subset) in ``<work>/data``."""
    d, out = ctx.cfg.data, ctx.work / "data"
    if d.kind == "yaml":
        return Path(d.yaml).resolve()  # checked before the first stage (check_files)
    if d.kind == "shapes":
        from ..data.shapes import make_shapes_dataset  # lazy: cv2 (only this data source needs it)

        s = d.shapes
        return Path(ctx.stages.run("data", as_dict(s), [out / "data.yaml"], lambda: str(make_shapes_dataset(
            out, n_train=s.n_train, n_val=s.n_val, size=s.size, seed=ctx.cfg.seed))))

    s = d.coco_subset
    classes, _ = chosen_classes(s.classes, s.preset)
    return Path(ctx.stages.run("data", {**as_dict(s), "classes": classes}, [out / "data.yaml"], lambda: str(
        make_coco_subset(Path(s.coco), out, classes, max_images=s.max_images, include_empty=s.negatives,
                         seed=ctx.cfg.seed))))


def teacher(ctx: StageContext, data: Path) -> Path:
    """The teacher's ``.pt``: resolved from the registry or a path, or trained in ``<work>/teacher``."""
    t = ctx.cfg.teacher
    if t.kind == "weights":
        return resolve_weights(t.weights).resolve()
    from ..distill.api import TrainJob, run_training  # lazy: torch, ultralytics (only this stage needs them)

    spec, run_dir = t.train, ctx.work / "teacher"
    args = ctx.train_args(run_dir, {"epochs": spec.epochs, **spec.args})
    job = TrainJob(student=spec.model, data=data, run_dir=run_dir, train_args=args)
    return Path(ctx.stages.run("teacher", {"spec": as_dict(spec), "data": DataInput(data), "args": args},
                               [run_dir / "weights" / "best.pt"], lambda: str(run_training(job)), clean=(run_dir,)))


def with_unlabeled(ctx: StageContext, data: Path, teacher_pt: Path) -> Path:
    """``data`` plus the recipe's unlabeled images labelled by the teacher (the distilled student's data)."""
    d = ctx.cfg.data
    if not d.unlabeled:
        return data

    images = Path(d.unlabeled)
    out = ctx.work / "unlabeled" / "data-with-unlabeled.yaml"
    key = {"images": images, "teacher": teacher_pt, "data": data, "conf": d.pseudo_conf,
           "class_map": ctx.cfg.distill.class_map or None, "imgsz": ctx.cfg.imgsz}
    merged = Path(ctx.stages.run("label unlabeled images with the teacher", key, [out], lambda: str(add_unlabeled(
        data, teacher_pt, images, ctx.work / "unlabeled", ctx.cfg.distill.class_map or None, d.pseudo_conf,
        ctx.cfg.imgsz, ctx.cfg.device))))
    ctx.note(f"The distilled student also trained on the images in {images}, labelled by the teacher "
             f"(confidence >= {d.pseudo_conf}); the student without KD saw the labelled data only.")
    return merged


def check_files(cfg: PipelineConfig) -> None:
    """Fail before the first stage on a ``data.yaml`` that does not exist, a student (``student.model``,
    ``student.weights``) that is not a detection model YAML or an existing ``.pt``, a ``teacher.train.model`` YAML
    that is not one, ``student.freeze_bn`` on a student built from a YAML (no BatchNorm statistics to keep) or a
    ``data.unlabeled`` that does not exist: most would otherwise be found after the teacher's stages."""
    from ..distill.api import model_config  # lazy: torch, ultralytics

    s, unlabeled, t = cfg.student, cfg.data.unlabeled, cfg.teacher
    models = [("student.model", s.model, "student") if s.kind == "model" else None,
              ("student.weights", s.weights, "student") if s.kind == "weights" and s.weights != "teacher" else None,
              # a teacher's .pt may be a name ultralytics downloads (yolov8n.pt): only its YAML is checked here
              ("teacher.train.model", t.train.model, "teacher")
              if t.kind == "train" and str(t.train.model).endswith((".yaml", ".yml")) else None]
    for field, source, role in filter(None, models):
        try:
            model_config(source, role)
        except FileNotFoundError as e:
            raise PipelineError(f"{field}: {e}{read_from(source)}") from None
        except ValueError as e:
            raise PipelineError(f"{field}: {e}") from None
    if s.freeze_bn and s.kind in ("model", "width"):
        raise PipelineError(f"student.freeze_bn keeps a trained student's BatchNorm statistics, and a student.{s.kind} "
                            "student is built from a YAML with none to keep: drop student.freeze_bn")
    if unlabeled is not None and not Path(unlabeled).exists():
        raise PipelineError(f"data.unlabeled: {unlabeled} does not exist{read_from(unlabeled)}; give a folder (or .txt "
                            "list) of your images")
    if cfg.data.kind == "yaml" and not Path(cfg.data.yaml).is_file():
        raise PipelineError(f"data.yaml: {cfg.data.yaml} does not exist{read_from(cfg.data.yaml)}")


def check_teacher_and_data(cfg: PipelineConfig, download: bool = True) -> list[str]:
    """Fail before the first stage on a ``data.yaml`` that ultralytics cannot read (its syntax, ``names``, split
    folders), a ``teacher.weights`` on this machine that is no trained detector, or classes the distillation cannot
    match (``distill.class_map``): each would otherwise stop the run at its first stage that reads them. A teacher to
    train or to download is checked by its stage.

    ``download=False`` (``run --check``): a data YAML whose images are missing and that has a ``download:`` entry is
    not downloaded but returned as a note, and the checks that need its classes are skipped."""
    from ..distill.dataset_check import check_dataset  # lazy: torch, ultralytics
    from ..distill.teacher import load_teacher

    dataset, notes = None, []
    if cfg.data.kind == "yaml":
        try:
            dataset = check_dataset(cfg.data.yaml, download=download)
        except ValueError as e:
            if download or not isinstance(e.__cause__, FileNotFoundError) or not _download_entry(cfg.data.yaml):
                raise PipelineError(f"data.yaml: {e}") from None
            hint = " (not with YOLO_OFFLINE set: download them first)" if offline() else ""
            notes.append(f"data.yaml: its images are not on this machine; the run gets them with the YAML's "
                         f"download: entry{hint} ({str(e.__cause__).splitlines()[0]})")
    if cfg.teacher.kind != "weights":
        return notes
    try:
        weights = resolve_weights(cfg.teacher.weights, download=False)
    except WeightsError:
        return notes  # a registry teacher not downloaded yet: its stage downloads it (run --check names it)
    try:
        teacher_model = load_teacher(weights)
    except (FileNotFoundError, ValueError, RuntimeError, EOFError) as e:
        raise PipelineError(f"teacher.weights: {e}") from None
    if dataset is not None and cfg.distill.recipe is not None:
        try:
            resolve_class_map(class_names(teacher_model), dataset, cfg.distill.class_map or None)
        except ValueError as e:
            raise PipelineError(f"distill.class_map: {e}") from None
    return notes


def _download_entry(data_yaml: str | Path) -> bool:
    """Whether a data YAML (that ultralytics could parse) names a ``download:`` source for missing images."""
    try:  # ultralytics has just parsed it
        return bool(read_data_yaml(data_yaml).get("download"))
    except (OSError, ValueError, yaml.YAMLError):
        return False


def student_start(ctx: StageContext, teacher_pt: Path, data: Path) -> str:
    """What the students start from: a model YAML or a ``.pt`` (the pruned teacher, a checkpoint, the teacher)."""
    s = ctx.cfg.student
    if s.kind == "model":
        return s.model
    if s.kind == "weights":  # fine-tune a checkpoint as it is (with student.imgsz: the teacher, smaller input)
        if str(s.weights) == "teacher":
            return str(teacher_pt)
        return str(s.weights)  # checked before the first stage (check_files)
    if s.kind == "width":
        from ..distill.students import scaled_model_yaml  # lazy: torch, ultralytics (only this stage needs them)

        model = load_detection_checkpoint(teacher_pt, role="teacher", tasks=("detect", "segment", "pose", "obb"))[0]
        family = "yolo11" if "yolo11" in str(model.yaml.get("yaml_file", "")) else "yolov8"
        return str(scaled_model_yaml(family, width=s.width, out=ctx.work / f"{family}n-student.yaml"))
    return pruned_teacher(ctx, teacher_pt, data)


def pruned_teacher(ctx: StageContext, teacher_pt: Path, data: Path) -> str:
    """``student.prune``: the teacher pruned to its budget (and refitted on the train images) in
    ``<work>/student-pruned.pt``. The pipeline's one call into :mod:`detdistill.prune`."""
    s = ctx.cfg.student
    p, out = s.prune, ctx.work / "student-pruned.pt"
    kwargs = {"target": p.target, "metric": p.metric, "imgsz": s.imgsz}
    if p.importance:
        kwargs["importance"] = p.importance
    if p.refit:  # least-squares refit of the pruned layers on the train images (prune/reconstruct.py)
        kwargs.update(calib=data, calib_images=p.calib_images)
    key = {"teacher": teacher_pt, **kwargs, **({"calib": DataInput(data)} if p.refit else {})}
    return ctx.stages.run("prune", key, [out],
                          lambda: str(prune_checkpoint(teacher_pt, out, PruneConfig(**kwargs)).path))
