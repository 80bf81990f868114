"""The ``detdistill`` command: one verb per job, each a thin call into the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from detdistill.cli_errors import fail

app = typer.Typer(
    name="detdistill",
    help="Shrink YOLO detectors by knowledge distillation and ship them to NVIDIA Jetson.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``['epochs=50', 'imgsz=640']`` -> ``{'epochs': 50, 'imgsz': 640}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            fail(f"unexpected argument {item!r}: extra ultralytics train arguments are written key=value, e.g. epochs=50")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value else None
    return out


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Example: detdistill train --teacher yolov8s.pt --student yolov8n.yaml --data vehicles.yaml epochs=100 imgsz=640",
)
def train(
    ctx: typer.Context,
    teacher: Path = typer.Option(None, help="Trained teacher checkpoint (.pt), any ultralytics detection model."),
    student: str = typer.Option(None, help="Student: a model YAML to train from scratch (yolov8n.yaml) or a .pt to fine-tune."),
    data: str = typer.Option(None, help="Dataset YAML (ultralytics format)."),
    recipe: str = typer.Option("default", help="Built-in recipe name (see `detdistill recipes`) or a recipe YAML path."),
    class_map: str = typer.Option(
        None,
        help="How student classes relate to the teacher's, e.g. 'Bus=bus;Ambulance=car,truck'. Default: the data "
        "YAML's teacher_classes/coco_classes block, else matching class names.",
    ),
    resume: Path = typer.Option(None, help="Resume an interrupted run from its weights/last.pt (nothing else needed)."),
) -> None:
    """Distill a teacher into a smaller student. Extra key=value arguments go to ultralytics' trainer
    (epochs, imgsz, batch, device, workers, seed, project, name, ...). Checkpoints hold the student only
    and load with plain YOLO(path)."""
    from detdistill.distill import ClassMapError, RecipeError, TeacherError
    from detdistill.distill import api
    from detdistill.distill.classmap import parse_class_map_arg

    overrides = parse_overrides(ctx.args)
    if resume is None:
        missing = [n for n, v in (("--teacher", teacher), ("--student", student), ("--data", data)) if v is None]
        if missing:
            fail(f"missing {', '.join(missing)}: `detdistill train --teacher T.pt --student S.yaml --data D.yaml`")
    try:  # every input is checked before training; errors during training keep their traceback
        if resume is not None:
            kd_config = api.resume_config(resume)
        else:
            spec = parse_class_map_arg(class_map) if class_map else None
            checked_recipe, _ = api.check_inputs(student, teacher, data, recipe, spec)
    except (TeacherError, RecipeError, ClassMapError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    if resume is not None:
        best = api.resume(resume, kd_config, **overrides)
    else:
        best = api.fit(student, teacher, data, checked_recipe, spec, **overrides)
    console.print(f"student checkpoint: [bold]{best}[/]")


@app.command()
def val(
    model: Path = typer.Argument(..., help="A .pt checkpoint (e.g. the distilled student's best.pt)."),
    data: str = typer.Option(..., help="Dataset YAML."),
    imgsz: int = typer.Option(640, help="Image size."),
    batch: int = typer.Option(16, help="Batch size."),
    device: str = typer.Option(None, help="cpu, 0, 0,1 ... (default: first GPU, else CPU)."),
) -> None:
    """Validate a PyTorch checkpoint with ultralytics' validator and print mAP50-95 and mAP50."""
    if not model.is_file():
        fail(f"model {str(model)!r} does not exist")
    from ultralytics import YOLO

    metrics = YOLO(str(model)).val(data=data, imgsz=imgsz, batch=batch, device=device, plots=False)
    typer.echo(f"mAP50-95 {metrics.box.map:.4f}  mAP50 {metrics.box.map50:.4f}")


@app.command()
def recipes() -> None:
    """List the built-in distillation recipes and what each one does."""
    from detdistill.distill.recipe import RECIPES_DIR, builtin_recipes

    for name in builtin_recipes():
        text = (RECIPES_DIR / f"{name}.yaml").read_text().splitlines()
        summary = " ".join(line.lstrip("# ") for line in text if line.startswith("#"))
        typer.echo(f"{name:10s} {summary}")


@app.command()
def quickstart(
    workdir: Path = typer.Option(Path("runs/quickstart"), help="Work folder; finished stages found there are reused."),
    tiny: bool = typer.Option(False, help="A smoke run of a few minutes (1 epoch each, a few images): checks the pipeline only."),
) -> None:
    """Run the whole job offline on generated data: train a teacher, distill a half-width student,
    export ONNX + INT8, measure accuracy and latency of each artifact, run the demo headless on a
    video, and write report.md."""
    from detdistill.quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig.tiny(workdir) if tiny else QuickstartConfig(workdir)
    report = run_quickstart(cfg, log=lambda line: console.print(line, highlight=False))
    typer.echo(report.read_text())


def _register_optional() -> None:
    """Add the deploy and demo verbs (they live with their packages)."""
    import importlib

    for module in ("detdistill.export.cli", "detdistill.demo.cli"):
        try:
            importlib.import_module(module).register(app)
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(module.rsplit(".", 1)[0]):
                raise


_register_optional()

if __name__ == "__main__":
    app()
