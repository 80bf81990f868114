"""The training stages: the student without KD, the distilled student and the quantization-aware distilled one,
each a :class:`~detdistill.distill.api.TrainJob` run through the stage cache (a finished run is reused, an
interrupted one resumes from its ``last.pt``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .artifacts import QAD_NAME, ROLE_NAMES, Artifact
from .config import PipelineConfig
from .context import StageContext
from .dataset_files import DataInput
from ..recipes import resolve_recipe_name

# under the work folder; student_kd_clean: with distill.average, the distilled student trained again without augment
RUN_DIRS = {"student": "student-no-kd", "student_kd": "student-kd", "student_kd_clean": "student-kd-clean",
            "qad": "student-qad"}
AVERAGE_FILE = "student-kd-average.pt"  # distill.average: the weight average of the two distilled students


# train: keys the recipe sets elsewhere -> where
SET_ELSEWHERE = {"data": "the data: section", "model": "the student: section (the teacher's: teacher.train.model)",
                 "project": "--workdir", "name": "--workdir", "resume": "rerunning the same command (finished "
                 "stages are reused, an interrupted training resumes)",
                 "imgsz": "the top-level imgsz: (the students' own: student.imgsz)",
                 "distill_model": "the teacher: section (detdistill's distillation, distill.recipe)",
                 "quantize": "export.int8: {qad: {epochs: N}} (quantization-aware distillation)"}


def check_train_settings(cfg: PipelineConfig) -> None:
    """Fail before the first stage on a trainer argument ultralytics does not know (e.g. ``epoch``) or refuses,
    a key of ``train:`` that the recipe sets elsewhere, or a ``device`` this machine lacks."""
    from ..distill.trainer import TrainArgumentError, check_train_args  # lazy: torch, ultralytics

    sections = {"train": cfg.train}
    if cfg.teacher.train is not None:
        sections["teacher.train.args"] = cfg.teacher.train.args
    for section, args in sections.items():
        for key in sorted(SET_ELSEWHERE.keys() & args.keys()):
            raise TrainArgumentError(f"{section}: {key} is not a training setting of a pipeline: it is set by "
                                     f"{SET_ELSEWHERE[key]}")
        check_train_args(args, f" in the recipe's {section}" + (": section" if section == "train" else ""))
    if cfg.device is not None:
        check_train_args({"device": cfg.device}, " (the recipe's device:)")


def _train(ctx: StageContext, stage: str, key: dict[str, Any], run_dir: Path, job: Any) -> Path:
    from ..distill.api import run_training  # lazy: torch, ultralytics (only this stage needs them)

    return Path(ctx.stages.run(stage, key, [run_dir / "weights" / "best.pt"], lambda: str(run_training(job)),
                               clean=(run_dir,)))


def recipe_key(recipe: str | None) -> str | Path | None:
    """A KD recipe in a stage's key: a YAML file by its contents (editing it retrains), a built-in by its name
    (``default`` by the built-in it stands for, so a new default retrains)."""
    if not recipe:
        return None
    return Path(recipe) if Path(recipe).is_file() else resolve_recipe_name(recipe)


def _augment_key(dist, teacher_clean: bool = False) -> dict:
    """The augmentation settings in a training stage's key, only when set (finished work folders keep their keys)."""
    key = {"augment": dist.augment} if dist.augment else {}
    return {**key, "teacher_clean": True} if teacher_clean and dist.teacher_clean else key


def students(ctx: StageContext, start: str, data: Path, kd_data: Path, teacher_pt: Path) -> list[Artifact]:
    """The no-KD baseline (on the labelled data) and the distilled student (on ``kd_data``: the labelled data
    plus any teacher-labelled images), as configured."""
    from ..distill.api import TrainJob, check_job  # lazy: torch, ultralytics (only this stage needs them)

    cfg, out = ctx.cfg, []
    dist, imgsz, freeze = cfg.distill, cfg.student.imgsz, cfg.student.freeze_bn
    start_key = Path(start) if Path(start).is_file() else start
    size = {"imgsz": imgsz}  # the teacher reads the student's batches at this size too
    kd_dir = ctx.work / RUN_DIRS["student_kd"]
    kd_job = TrainJob(student=start, data=kd_data, teacher=teacher_pt, recipe=dist.recipe, class_map=dist.class_map,
                      freeze_bn=freeze, augment=dist.augment, teacher_clean=dist.teacher_clean, run_dir=kd_dir,
                      train_args=ctx.train_args(kd_dir, size))
    if dist.recipe and dist.baseline:
        check_job(kd_job)  # a bad recipe or class map fails now, not after the student without KD has trained
    if dist.baseline:
        run_dir = ctx.work / RUN_DIRS["student"]
        args = ctx.train_args(run_dir, size)
        job = TrainJob(student=start, data=data, freeze_bn=freeze, augment=dist.augment, run_dir=run_dir,
                       train_args=args)
        key = {"student": start_key, "data": DataInput(data), "args": args, "freeze_bn": freeze, **_augment_key(dist)}
        best = _train(ctx, "train student without KD", key, run_dir, job)
        out.append(Artifact("student", "pt", best, best, imgsz))
    if dist.recipe:
        key = {"student": start_key, "data": DataInput(kd_data), "args": kd_job.train_args, "teacher": teacher_pt,
               "recipe": recipe_key(dist.recipe), "class_map": dist.class_map, "freeze_bn": freeze,
               **_augment_key(dist, teacher_clean=True)}
        best = _train(ctx, f"distill student ({dist.recipe})", key, kd_dir, kd_job)
        if dist.average is not None:
            best = _average_with_clean(ctx, kd_job, key, best)
        out.append(Artifact("student_kd", "pt", best, best, imgsz))
    if dist.augment and out:  # the report says which students saw augmented images
        who = ["the student without KD"] if dist.baseline else []
        if dist.recipe:
            kd = "the augmented one of the two distilled students" if dist.average is not None else "the distilled student"
            who.append(kd + (" (its teacher read the clean images)" if dist.teacher_clean else ""))
        ctx.note(f"Augmentation: {' and '.join(who)} trained under the '{dist.augment}' preset.")
    return out


def _average_with_clean(ctx: StageContext, kd_job: Any, kd_key: dict, augmented: Path) -> Path:
    """``distill.average``: the distilled student trained again on clean images, and the weight average of the two
    (:mod:`detdistill.weight_average`), the share ``distill.average`` of the augmented one: the student shipped."""
    from ..weight_average import average_checkpoints  # lazy: torch (only this stage needs it)

    dist = ctx.cfg.distill
    run_dir = ctx.work / RUN_DIRS["student_kd_clean"]
    job = replace(kd_job, augment=None, teacher_clean=False, run_dir=run_dir,
                  train_args={**kd_job.train_args, "project": str(run_dir.parent), "name": run_dir.name})
    key = {k: v for k, v in {**kd_key, "args": job.train_args}.items() if k not in ("augment", "teacher_clean")}
    clean = _train(ctx, f"distill student ({dist.recipe}) on clean images", key, run_dir, job)
    out = ctx.work / AVERAGE_FILE
    ctx.stages.run("average the distilled students", {"clean": clean, "augmented": augmented, "weight": dist.average},
                   [out],  # one name for any weight: the key holds it, so another weight averages again
                   lambda: str(average_checkpoints(clean, augmented, dist.average, out).path))
    ctx.note(f"The distilled student is the weight average of two distillations, on clean images and under the "
             f"'{dist.augment}' preset ({dist.average:g} of the latter; `detdistill average`).")
    return out


def qad(ctx: StageContext, final: Artifact, kd_data: Path, teacher_pt: Path) -> Artifact:
    """The final student fine-tuned with INT8 fake quantization under the KD losses (``export.int8.qad``), taught
    by its own FP32 weights (``teacher: self``) or by the pipeline's teacher."""
    from ..distill.api import TrainJob  # lazy: torch, ultralytics (only this stage needs them)
    from ..distill.qad import SELF_RECIPE

    cfg = ctx.cfg
    q, dist, freeze = cfg.qad, cfg.distill, cfg.student.freeze_bn
    own = q.teacher == "self"
    teacher = final.path if own else teacher_pt
    recipe = q.recipe or (SELF_RECIPE if own else dist.recipe or "default")
    class_map = None if own else dist.class_map  # its own weights predict the student's classes
    run_dir = ctx.work / RUN_DIRS["qad"]
    args = ctx.train_args(run_dir, {"imgsz": cfg.student.imgsz, "epochs": q.epochs})
    job = TrainJob(student=final.path, data=kd_data, teacher=teacher, recipe=recipe, class_map=class_map,
                   freeze_bn=freeze, int8=True, run_dir=run_dir, train_args=args)
    key = {"student": final.path, "data": DataInput(kd_data), "args": job.args(), "teacher": teacher,
           "recipe": recipe_key(recipe), "class_map": class_map, "freeze_bn": freeze, "int8": True}
    best = _train(ctx, qad_stage_name(recipe, own, q.epochs), key, run_dir, job)
    return Artifact("student_kd", "pt", best, best, cfg.student.imgsz, precision="int8", method="qad")


def qad_stage_name(recipe: str, own: bool, epochs: int) -> str:
    """The QAD stage's name in the progress lines and the report, e.g.
    ``quantization-aware distillation (logit-box, its own FP32 weights, 1 epoch)``."""
    taught = "its own FP32 weights" if own else "the teacher"
    return f"quantization-aware distillation ({recipe}, {taught}, {epochs} epoch{'s' * (epochs != 1)})"


def training_runs(ctx: StageContext) -> list[tuple[str, Path]]:
    """``(name, results.csv)`` of every student training found in the work folder, for the report's curves."""
    names = {"student": ROLE_NAMES["student"], "student_kd": ROLE_NAMES["student_kd"],
             "student_kd_clean": f"{ROLE_NAMES['student_kd']}, clean images", "qad": QAD_NAME}
    found = [(names[k], ctx.work / d / "results.csv") for k, d in RUN_DIRS.items()]
    return [(name, csv) for name, csv in found if csv.is_file()]
