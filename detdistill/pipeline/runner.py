"""``detdistill run``: data, teacher, student (pruned), distillation, export, INT8, engines, measurements, report.

The stages themselves live with their family (:mod:`.input_stages`, :mod:`.training_stages`,
:mod:`.deploy_stages`, :mod:`.measure_stages`); this module runs them in order. Every stage goes through
:class:`StageCache`, so a rerun skips what is up to date and an interrupted training resumes from its ``last.pt``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from .. import atomic
from ..export.platform_info import detect_gpu
from ..registry.weights import WeightsError, get_entry, offline, resolve_weights
from ..yaml_numbers import load_yaml
from . import deploy_stages, input_stages, measure_stages, training_stages
from .artifacts import Artifact, final_student
from .config import PipelineConfig, load_pipeline, validate
from .context import Log, StageContext, describe_machine, tensorrt_version
from .report import ArtifactResult, PipelineReport, TrainingRun, write_report
from .schema import PipelineError
from .stages import StageCache


class Pipeline:
    """One pipeline run in ``workdir``; :meth:`run` returns the path of ``report.md``."""

    def __init__(self, cfg: PipelineConfig, recipe_text: str, workdir: Path, log: Log = print):
        self.cfg, self.recipe_text, self.log = cfg, recipe_text, log
        self.work = claim_workdir(workdir)
        self.stages = StageCache(self.work, log)
        self.ctx = StageContext(cfg, self.work, self.stages, log)
        self.gpu = detect_gpu()

    @property
    def notes(self) -> list[str]:
        return self.ctx.notes

    def data(self) -> Path:
        """The dataset's YAML (generated or built when the recipe says so)."""
        return input_stages.dataset(self.ctx)

    def teacher(self, data: Path) -> Path:
        """The teacher's ``.pt`` (trained when the recipe says so)."""
        return input_stages.teacher(self.ctx, data)

    def checkpoints(self, data: Path, teacher_pt: Path) -> list[Artifact]:
        """The teacher and every student the recipe trains, in report order."""
        cfg, ctx = self.cfg, self.ctx
        kd_data = input_stages.with_unlabeled(ctx, data, teacher_pt)
        start = input_stages.student_start(ctx, teacher_pt, data)
        out = [Artifact("teacher", "pt", teacher_pt, teacher_pt, cfg.imgsz)]
        out += training_stages.students(ctx, start, data, kd_data, teacher_pt)
        if cfg.qad is not None:
            out.append(training_stages.qad(ctx, final_student(out), kd_data, teacher_pt))
        return out

    def measure(self, artifacts: list[Artifact], data: Path) -> list[ArtifactResult]:
        """Every artifact measured; engines only where there is a GPU."""
        results = []
        for artifact in artifacts:
            if artifact.format == "engine" and self.gpu is None:
                self.stages.skip(f"measure {artifact.label}", "no GPU here")
                continue
            results.append(measure_stages.measure(self.ctx, artifact, data))
            if self.cfg.measure.corrupt and artifact.format == "onnx":
                results[-1].robustness = measure_stages.robustness(self.ctx, artifact, data, results[-1].map50_95)
        return results

    def run(self) -> Path:
        """Every stage in order, then the report; return the path of ``report.md``."""
        check_inputs(self.cfg)
        note_recipe(self.work, self.recipe_text, self.stages, self.log)
        self.stages.total = self._count_stages()
        data = self.data()
        artifacts = deploy_stages.export_all(self.ctx, self.checkpoints(data, self.teacher(data)), data)
        results = self.measure(artifacts, data)
        measure_stages.demo(self.ctx, [a for a in artifacts if a.format == "onnx"][-1], data)
        scored, of = measure_stages.eval_images(self.ctx, data) if results else (None, None)  # the same for each
        report = PipelineReport(
            title=f"detdistill pipeline: {self.cfg.name}", config_text=self.recipe_text,
            machine=describe_machine(self.gpu.name if self.gpu else None), imgsz=self.cfg.imgsz, data=str(data),
            artifacts=results, training=[TrainingRun(n, csv) for n, csv in training_stages.training_runs(self.ctx)],
            stages=self.stages.rows, notes=self.notes, eval_images=scored, eval_total=of)
        md, html = self._write_report(report)
        self.log(f"report: {md} (and {html.name})")
        return md

    def _write_report(self, report: PipelineReport) -> tuple[Path, Path]:
        """Write report.md and report.html into a scratch folder, then move each into ``workdir`` atomically."""
        scratch = Path(tempfile.mkdtemp(prefix=".report-", dir=self.work))
        try:
            written = write_report(report, scratch)
            for path in written:
                atomic.commit(path, self.work / path.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        md, html = (self.work / path.name for path in written)
        return md, html

    def _count_stages(self) -> int:
        """How many stages this run goes through (for the [n/N] progress lines)."""
        c = self.cfg
        inputs = (c.data.kind != "yaml") + (c.teacher.kind == "train") + bool(c.data.unlabeled)
        inputs += c.student.kind == "prune"
        trainings = bool(c.distill.baseline) + bool(c.distill.recipe) + (c.qad is not None)
        averaged = 2 * (c.distill.average is not None)  # the distillation on clean images and the average (no ONNX)
        engines = len(c.export.engines or [])
        onnx = 1 + trainings + (c.export.int8 is not None)
        measured = onnx + (engines if tensorrt_version() and self.gpu else 0)
        robust = onnx if c.measure.corrupt else 0
        return inputs + trainings + averaged + onnx + engines + measured + robust + bool(c.demo.frames)


RECIPE_COPY = ".recipe.yaml"  # the recipe of the latest run in a work folder


def note_recipe(work: Path, recipe_text: str, stages: StageCache, log: Log) -> None:
    """Keep ``recipe_text`` in the work folder; warn before any stage runs when the folder's finished stages came from
    another recipe (a stage whose settings differ is then done again and its earlier result replaced)."""
    copy = work / RECIPE_COPY
    before = copy.read_text(encoding="utf-8", errors="replace") if copy.is_file() else None
    if before is not None and parsed_recipe(before) != parsed_recipe(recipe_text) and stages.finished():
        log(f"warning: the work folder {work} holds the stages of another recipe: each stage whose settings differ "
            "will be done again and its earlier result replaced (to keep both, give this recipe its own folder: "
            "--workdir NEW_FOLDER)")
    atomic.write_text(copy, recipe_text)


def parsed_recipe(text: str) -> object:
    """What a recipe asks for, to compare two: its configuration with the defaults filled in, else (a recipe this
    version refuses) its parsed YAML, else its text. Comments, layout, key order and defaults given explicitly do
    not count."""
    try:
        raw = load_yaml(text)
    except yaml.YAMLError:
        return text
    try:
        return validate(raw or {})
    except ValueError:  # PipelineError (and its kin) is a ValueError
        return raw


def claim_workdir(workdir: Path, create: bool = True) -> Path:
    """``workdir`` resolved and (``create``) created; raises :class:`PipelineError` when it is a file, or a folder
    that holds other files than a pipeline's (a run deletes and rewrites its stage folders: nothing else may be
    lost)."""
    work = workdir.resolve()
    where = f"the work folder {workdir} (from --workdir, the recipe's workdir, or runs/pipeline/<name>)"
    if work.exists() and not work.is_dir():
        raise PipelineError(f"{where} is a file, not a folder: choose a new or empty folder")
    if work.is_dir() and not (work / StageCache.MANIFEST).is_file() \
            and not any(work.glob(f"{StageCache.MANIFEST}.damaged-*")):
        found = sorted(p.name for p in work.iterdir() if not p.name.startswith("."))
        if found:
            raise PipelineError(f"{where} already holds files that are not a detdistill pipeline's "
                                f"(no {StageCache.MANIFEST}; e.g. {found[0]}): a run writes and deletes stage folders "
                                "there, so choose a new or empty folder")
    if not create:
        writable_folder(work, where)
        return work
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(f"cannot create {where}: {e.strerror or e}; choose a folder you can write") from None
    return work


def writable_folder(work: Path, where: str) -> None:
    """Raise :class:`PipelineError` when ``work`` could not be created or written; leaves nothing behind (a probe
    folder is made in its nearest existing folder and removed: permission bits do not tell, e.g. /proc for root)."""
    existing = atomic.nearest_existing(work)
    if not existing.is_dir():
        raise PipelineError(f"cannot create {where}: {existing} is a file, not a folder; choose another folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".detdistill-check-", dir=existing))
    except OSError as e:
        raise PipelineError(f"cannot create {where}: {existing} is not writable ({e.strerror or e}); choose a folder "
                            "you can write") from None


def check_inputs(cfg: PipelineConfig, download: bool = True) -> list[str]:
    """What can be checked before the first stage beyond the recipe's own fields: training arguments and the
    device, the files it names (data YAML, student, a teacher to train, unlabeled images), the teacher's weights
    and the classes it distills. ``download=False``: nothing is downloaded; what the run would download is returned
    as notes."""
    training_stages.check_train_settings(cfg)
    input_stages.check_files(cfg)
    return input_stages.check_teacher_and_data(cfg, download=download)


def work_folder(cfg: PipelineConfig, workdir: Path | None = None) -> Path:
    """The run's work folder: ``workdir`` (``--workdir``), else the recipe's ``workdir``, else runs/pipeline/<name>."""
    return Path(workdir or cfg.workdir or Path("runs/pipeline") / cfg.name)


def check_pipeline(recipe: str | Path | dict, workdir: Path | None = None) -> tuple[Path, list[str]]:
    """Check a recipe as :func:`run_pipeline` does before its first stage, and its teacher weights as their stage
    would, without running, downloading or writing anything; return the work folder a run would use and notes (a
    teacher the run would download)."""
    cfg, _ = load_pipeline(recipe)
    work = claim_workdir(work_folder(cfg, workdir), create=False)
    notes = check_inputs(cfg, download=False)
    if cfg.teacher.kind == "weights":
        try:  # offline, the error names YOLO_OFFLINE as the run's would; else download=False downloads nothing
            resolve_weights(cfg.teacher.weights, download=None if offline() else False)
        except WeightsError as e:
            entry = get_entry(str(cfg.teacher.weights))
            if entry is None or entry.url is None or offline():
                raise PipelineError(f"teacher.weights: {e}") from None
            notes.append(f"teacher.weights: {entry.name} is not on this machine; the run downloads it from {entry.url}")
    return work, [*notes, run_plan(cfg)]


def run_plan(cfg: PipelineConfig) -> str:
    """What a run of ``cfg`` makes, in one line, naming what the recipe turned off (an ``int8:`` left empty is
    null, and makes no INT8 model)."""
    dist = cfg.distill
    kd = f"a student with KD (recipe {dist.recipe})" + (
        f", the weight average ({dist.average:g}) of it distilled under '{dist.augment}' and on clean images"
        if dist.average is not None else "")
    trained = [what for what, on in (("a student without KD", dist.baseline), (kd, dist.recipe)) if on]
    int8 = cfg.export.int8
    made = [*trained, "their ONNX files"]
    if int8 is None:
        made.append("no INT8 model (export.int8 is null or empty)")
    else:
        made.append(f"INT8 ({int8.target} target" + (f", within {int8.max_drop} mAP" if int8.max_drop else "") + ")")
        if int8.qad is not None:
            made.append(f"quantization-aware distillation ({int8.qad.epochs} epoch{'s' * (int8.qad.epochs != 1)})")
    engines = cfg.export.engines or []
    made.append(f"TensorRT engines {', '.join(engines)} where TensorRT is installed" if engines
                else "no TensorRT engine (export.engines is null or [])")
    extra = [what for what, on in (("corruption scores", cfg.measure.corrupt), (f"a {cfg.demo.frames}-frame demo",
                                                                            cfg.demo.frames)) if on]
    return f"a run makes: {'; '.join(made)}; then measures each" + (f", with {' and '.join(extra)}" if extra else "")


def run_pipeline(recipe: str | Path | dict, workdir: Path | None = None, log: Log = print) -> Path:
    """Run a pipeline recipe; return the path of its ``report.md``."""
    cfg, text = load_pipeline(recipe)
    return Pipeline(cfg, text, work_folder(cfg, workdir), log).run()
