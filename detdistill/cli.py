"""The ``detdistill`` command: one verb per job, each a thin call into the library.

Every verb runs inside one error boundary (:class:`detdistill.cli_errors.ErrorBoundary`, the app's command
group): bad input and unreadable files end in one ``error: ...`` line, Ctrl-C in how to go on.
"""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

import detdistill
from detdistill.cli_errors import OPTIONAL_DEPENDENCIES, ErrorBoundary, fail, path_parser
from detdistill.data.class_map import parse_class_map_arg
from detdistill.data.dataset import load_dataset, require_labels
from detdistill.data.unlabeled import PSEUDO_CONF
from detdistill.models import CHECKPOINT_FIX, trained_imgsz
from detdistill.file_checks import require_present
from detdistill.recipes import RECIPES_DIR, builtin_recipes, recipe_summary, resolve_recipe_name
from detdistill.yaml_numbers import load_yaml

app = typer.Typer(
    cls=ErrorBoundary,
    name="detdistill",
    help="Shrink YOLO detectors by knowledge distillation and ship them to NVIDIA Jetson.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"detdistill {detdistill.__version__} (Python {platform.python_version()}, {platform.machine()})")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the installed version and exit.")) -> None:
    """Shrink YOLO detectors by knowledge distillation and ship them to NVIDIA Jetson."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``['epochs=50', 'imgsz=640']`` -> ``{'epochs': 50, 'imgsz': 640}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            fail(f"unexpected argument {item!r}: extra ultralytics train arguments are written key=value, e.g. epochs=50")
        key, value = item.split("=", 1)
        out[key.strip()] = load_yaml(value) if value else None
    return out


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Example: detdistill train --teacher yolov8s.pt --student yolov8n.yaml --data vehicles.yaml epochs=100 imgsz=640",
)
def train(
    ctx: typer.Context,
    teacher: Path = typer.Option(
        None, help="Trained teacher: a .pt of any ultralytics detection model, or a registry name (yolov8s; see "
        "`detdistill weights list`)."),
    student: str = typer.Option(None, help="Student: a model YAML to train from scratch (yolov8n.yaml) or a .pt to fine-tune."),
    data: str = typer.Option(None, help="Dataset YAML (ultralytics format)."),
    recipe: str = typer.Option(None, help="Built-in recipe name (see `detdistill recipes`) or a recipe YAML path. "
                               "Default: default; logit-box where --int8 makes the student its own teacher."),
    class_map: str = typer.Option(
        None,
        help="How student classes relate to the teacher's, e.g. 'Bus=bus;Ambulance=car,truck'. Default: the data "
        "YAML's teacher_classes/coco_classes block, else matching class names.",
    ),
    unlabeled: Path = typer.Option(
        None, help="A folder of your own unlabeled images (e.g. dashcam frames): the teacher labels them and they "
        "join the training split, supervised by the teacher alone."),
    pseudo_conf: float = typer.Option(None, min=0.0, max=1.0, help="Teacher confidence from which its detections "
                                      f"label --unlabeled images (default {PSEUDO_CONF})."),
    freeze_bn: bool = typer.Option(
        False, "--freeze-bn", help="Keep the student's BatchNorm statistics fixed: for a .pt student (pruned, or "
        "the teacher at a smaller imgsz) on a small dataset."),
    resume: Path = typer.Option(None, help="Resume an interrupted run from its weights/last.pt (nothing else needed)."),
    int8: bool = typer.Option(
        False, "--int8", help="Quantization-aware distillation: fine-tune the student with INT8 fake quantization "
        "(NVIDIA ModelOpt) under the KD losses; `detdistill export` then writes a Q/DQ ONNX with the learned scales. "
        "Without --teacher, a .pt student is its own FP32 teacher (recipe logit-box). Fine-tunes with "
        "optimizer=SGD lr0=1e-4 warmup_epochs=0 unless you set them."),
    augment: str = typer.Option(
        None, help="Road-domain augmentation of the training images: 'road' (weather, low light, blur, sensor "
        "noise, JPEG; needs the robust extra; half the images at severity 1-3), 'road-light' (a quarter "
        "of the images, severity 1-2) or 'road-heavy' (four fifths, severity 1-4). Validation "
        "images stay clean."),
    teacher_clean: bool = typer.Option(
        False, "--teacher-clean", help="With --augment: the teacher sees each image before the augmentation, the "
        "student after it (robustness distillation)."),
) -> None:
    """Distill a teacher into a smaller student. Extra key=value arguments go to ultralytics' trainer
    (epochs, imgsz, batch, device, workers, seed, project, name, ...). Checkpoints hold the student only
    and load with plain YOLO(path)."""
    from detdistill.distill import api  # lazy: torch, ultralytics (the CLI starts without them)
    from detdistill.distill.trainer import RESUME_OVERRIDES, check_train_args

    if pseudo_conf == 0:
        fail("--pseudo-conf 0 would label every one of the teacher's candidate boxes: give a confidence above 0 and "
             f"at most 1 (default {PSEUDO_CONF})")
    if pseudo_conf is not None and unlabeled is None:
        fail("--pseudo-conf sets the teacher's confidence for --unlabeled images: give --unlabeled DIR too, or drop it")
    overrides = parse_overrides(ctx.args)
    for key in sorted(SET_BY_OPTIONS.keys() & overrides.keys()):
        fail(f"{key}={overrides[key]} is set by {SET_BY_OPTIONS[key]}: use that option instead")
    check_train_args(overrides)
    if resume is not None:  # a resumed run goes on as it started: say so rather than drop what was given
        given = [name for name, value in (("--teacher", teacher), ("--student", student), ("--data", data),
                                          ("--recipe", recipe), ("--class-map", class_map), ("--augment", augment),
                                          ("--teacher-clean", teacher_clean), ("--unlabeled", unlabeled),
                                          ("--pseudo-conf", pseudo_conf), ("--freeze-bn", freeze_bn), ("--int8", int8))
                 if value not in (None, False)]
        given += [f"{k}=" for k in sorted(overrides.keys() - RESUME_OVERRIDES)]
        if given:
            fail(f"--resume carries on a run with the settings it started with, from its checkpoint; "
                 f"{', '.join(given)} cannot change them: drop {'it' if len(given) == 1 else 'them'}, or start a new "
                 f"run (on resume only {', '.join(sorted(RESUME_OVERRIDES))} may be given, e.g. a smaller batch=)")
    if resume is None:
        # --int8 needs no --teacher (a .pt student is its own: TrainJob); check_job names a student it cannot train;
        # --augment without one trains the student on augmented images alone (the baseline of a robust student)
        missing = [n for n, v in (("--teacher", teacher), ("--student", student), ("--data", data))
                   if v is None and not ((int8 or augment) and n == "--teacher")]
        if missing:
            fail(f"missing {', '.join(missing)}: `detdistill train --teacher T.pt --student S.yaml --data D.yaml` (or "
                 "without --teacher, `--augment PRESET` to train the student on augmented images alone)")
        if teacher is None and not int8:
            ignored = [n for n, v in (("--recipe", recipe), ("--class-map", class_map)) if v is not None]
            if ignored:
                fail(f"{', '.join(ignored)} set{'s' if len(ignored) == 1 else ''} how a teacher distills, and no "
                     "--teacher is given: add --teacher T.pt, or drop " + ", ".join(ignored))
            console.print(f"no --teacher: the student trains on '{augment}' images without distillation")
    # every input is checked before training; a bad one ends in one `error:` line through the app's ErrorBoundary
    job = api.TrainJob(student=student, data=data, teacher=teacher, recipe=recipe,
                       class_map=parse_class_map_arg(class_map) if class_map else None, freeze_bn=freeze_bn,
                       int8=int8, augment=augment, teacher_clean=teacher_clean, unlabeled=unlabeled,
                       pseudo_conf=api.TrainJob.pseudo_conf if pseudo_conf is None else pseudo_conf,
                       resume=resume, train_args=overrides)
    best = api.run_training(job)
    console.print(f"student checkpoint: [bold]{best}[/]", soft_wrap=True)  # a path to copy, never wrapped
    if int8:  # its ONNX carries the learned scales: quantize would refuse it
        import torch  # lazy: torch (loaded by the training above)

        size = trained_imgsz(torch.load(best, map_location="cpu", weights_only=False))
        console.print(f"next: detdistill export {best} --imgsz {size}  (writes its INT8 Q/DQ ONNX with the scales it "
                      "learned; no quantize step)", soft_wrap=True, markup=False)


@app.command(epilog="Example: detdistill val runs/student/weights/best.pt --data vehicles.yaml --imgsz 320")
def val(
    model: Path = typer.Argument(..., help="A .pt checkpoint (e.g. the distilled student's best.pt)."),
    data: str = typer.Option(..., help="Dataset YAML."),
    imgsz: Optional[int] = typer.Option(None, min=32,
                                        help="Image size (default: the size it was trained at, else 640)."),
    batch: int = typer.Option(16, min=1, help="Batch size."),
    device: str = typer.Option(None, help="cpu, 0, 0,1 ... (default: first GPU, else CPU)."),
) -> None:
    """Validate a PyTorch checkpoint with ultralytics' validator and print mAP50-95 and mAP50."""
    try:
        require_present(model, "model", CHECKPOINT_FIX)
    except FileNotFoundError as e:
        fail(str(e))
    if model.suffix != ".pt":
        fail(f"{model} is not a .pt checkpoint: `val` runs ultralytics' validator on PyTorch weights; score an "
             f"exported model with `detdistill eval {model} --data {data}`")
    from ultralytics import YOLO  # lazy: ultralytics (the CLI starts without it)

    from detdistill.distill.dataset_check import check_dataset

    try:
        check_dataset(data)  # as `train` checks it: a bad data YAML is named before the model loads
        # as `eval` checks it: without any label file every image is a background image (mAP 0)
        require_labels(load_dataset(data).images("val"), f"split 'val' of {data}")
        yolo = YOLO(str(model))
        stride = int(max(yolo.model.stride))
        if imgsz is None:  # as YOLO(path).val() takes it
            imgsz = trained_imgsz(yolo.ckpt or {})
            typer.secho(f"note: {model.name} is validated at {imgsz} px (the size it was trained at, else 640; "
                        "--imgsz to choose another)", fg=typer.colors.YELLOW, err=True)
        if imgsz % stride:
            fail(f"--imgsz {imgsz} is not a multiple of the model stride {stride} (ultralytics would round it up to "
                 f"{-(-imgsz // stride) * stride}): pass e.g. 320 or 640")
        metrics = yolo.val(data=data, imgsz=imgsz, batch=batch, device=device, plots=False)
    except (TypeError, ValueError, FileNotFoundError) as e:  # ultralytics' checks of the data YAML and the device
        fail(str(e))
    typer.echo(f"mAP50-95 {metrics.box.map:.4f}  mAP50 {metrics.box.map50:.4f}")


@app.command(epilog="Example: detdistill average runs/clean/weights/best.pt runs/road/weights/best.pt --weight 0.5 "
             "-o student-avg.pt")
def average(
    first: Path = typer.Argument(..., help="A fine-tuned student (.pt), e.g. distilled on clean images."),
    second: Path = typer.Argument(..., help="The same student fine-tuned otherwise, e.g. with --augment road."),
    weight: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of SECOND in the average (0.5: the midpoint)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output .pt (default: <first>-avg<weight>.pt)."),
) -> None:
    """Average the weights of two fine-tunes of one student into a new checkpoint (a weight-space ensemble).

    E.g. a student distilled on clean images and the same student distilled under road augmentation, both from one
    start (measured in docs/benchmarks.md: more robust than the first, with no measurable clean loss). Export,
    quantize or fine-tune the result as any checkpoint.
    """
    from detdistill.weight_average import average_checkpoints  # lazy: torch (the CLI starts without it)

    result = average_checkpoints(first, second, weight, output)  # its errors name the file: one line each
    console.print(f"wrote [bold]{result.path}[/] ({1 - weight:g} x {first} + {weight:g} x {second}; "
                  f"cosine similarity of their weights {result.cosine:.4f})", soft_wrap=True)


@app.command(epilog="Example: detdistill recipes   (then: detdistill train ... --recipe cwd); detdistill recipes "
             "cwd > my.yaml   (a copy to edit, then --recipe my.yaml)")
def recipes(
    name: Optional[str] = typer.Argument(None, help="Print this built-in recipe's YAML (to copy and edit)."),
) -> None:
    """List the built-in distillation recipes and what each one does, or print one."""
    if name is not None:
        if name not in builtin_recipes():
            fail(f"no built-in recipe {name!r}: choose from {', '.join(builtin_recipes())}")
        typer.echo((RECIPES_DIR / f"{resolve_recipe_name(name)}.yaml").read_text(), nl=False)
        return
    for name in builtin_recipes():
        typer.echo(f"{name:10s} {recipe_summary(name)}")


# where `detdistill train` sets each of the ultralytics keys detdistill reserves (trainer.RESERVED_TRAIN_KEYS)
SET_BY_OPTIONS = {"model": "--student", "data": "--data", "resume": "--resume LAST.pt",
                  "distill_model": "--teacher (detdistill's distillation, --recipe)",
                  "quantize": "--int8 (quantization-aware distillation)"}
WORK_FOLDER = "a new or empty folder, or one an earlier run made"
QUICKSTART_RECIPE = Path(__file__).parent / "pipeline" / "recipes" / "quickstart.yaml"  # wherever it is installed


@app.command(epilog="Example: detdistill quickstart --workdir runs/first-look   (--tiny: a smoke run)")
def quickstart(
    workdir: Path = typer.Option(Path("runs/quickstart"), parser=path_parser("--workdir", WORK_FOLDER), metavar="PATH",
                                 help="Work folder; finished stages found there are reused."),
    tiny: bool = typer.Option(False, help="A smoke run of a few minutes (1 epoch each, a few images): checks the pipeline only."),
) -> None:
    """Run the whole pipeline offline on generated data: train a teacher, train a half-width student
    without and with distillation, export ONNX + INT8, measure accuracy and latency of each artifact,
    run the demo headless on a video, and write report.md/report.html."""
    from detdistill.quickstart import run_quickstart  # lazy: the CLI starts fast without the pipeline

    report = run_quickstart(workdir, tiny, log=lambda line: console.print(line, highlight=False, soft_wrap=True))
    typer.echo(report.read_text())


@app.command(epilog=f"Example (a ready recipe to copy): detdistill run {QUICKSTART_RECIPE} --workdir runs/mine. "
             "Every recipe key, its type and default: docs/pipeline.md.")
def run(
    recipe: Path = typer.Argument(..., help="Pipeline recipe YAML (data, teacher, student, train, distill, export)."),
    workdir: Path = typer.Option(None, parser=path_parser("--workdir", WORK_FOLDER), metavar="PATH",
                                 help="Work folder (default: runs/pipeline/<name>); finished stages are reused."),
    check: bool = typer.Option(False, "--check", help="Only check the recipe and its inputs, as a run does before "
                               "its first stage; run and write nothing."),
) -> None:
    """Shrink a detector in one command: dataset (COCO subset), teacher, pruning, distillation, ONNX,
    INT8, TensorRT engines where TensorRT is installed, then accuracy and latency of every artifact in
    report.md and a self-contained report.html. Rerun the same command to resume an interrupted run."""
    from detdistill.pipeline.runner import check_pipeline, run_pipeline  # lazy: the CLI starts fast without them

    if check:
        work, notes = check_pipeline(recipe, workdir)
        for note in notes:
            console.print(f"note: {note}", highlight=False, soft_wrap=True)
        typer.echo(f"{recipe}: no problem found (the recipe's fields, training arguments and device, data, teacher, "
                   f"student, unlabeled images); a run would work in {work}")
        return

    # bad recipes, inputs and files end in one `error:` line through the app's ErrorBoundary
    report = run_pipeline(recipe, workdir, log=lambda line: console.print(line, highlight=False, soft_wrap=True))
    typer.echo(report.read_text())


VERB_MODULES = ("detdistill.export.cli", "detdistill.demo.cli", "detdistill.data.cli", "detdistill.prune.cli",
                "detdistill.registry.cli")


def _register_optional() -> None:
    """Add the verbs that live with their packages (deploy, demo, data, prune, weights).

    A broken import inside detdistill fails loudly; a missing third-party package skips that module's
    verbs with a note saying what to install."""
    for module in VERB_MODULES:
        try:
            verbs = importlib.import_module(module)
        except ModuleNotFoundError as e:
            missing = (e.name or "").split(".")[0]
            if not missing or missing == "detdistill":
                raise
            extra = OPTIONAL_DEPENDENCIES.get(missing, missing)
            console.print(f"note: the verbs of {module} are unavailable: {missing} is not installed "
                          f"(pip install '{extra}')", highlight=False, markup=False)
            continue
        verbs.register(app)


_register_optional()

if __name__ == "__main__":
    app()
