"""CLI verb ``prune``: structured channel pruning of a YOLO checkpoint (``register(app)`` adds it)."""

from __future__ import annotations

from pathlib import Path
from shlex import quote

import typer

from ..cli_errors import fail
from ..models import CHECKPOINT_FIX
from ..file_checks import require_present
from .checkpoint import prune_checkpoint
from .config import PruneConfig, PruneConfigError
from .models import PruneError


def prune(
    weights: Path = typer.Argument(..., help="Trained ultralytics detection checkpoint (.pt), e.g. the teacher."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .pt (default: <weights>-pruned<target>.pt)."),
    target: float = typer.Option(0.5, help="Fraction of the GFLOPs (or parameters) to keep, between 0 and 1."),
    metric: str = typer.Option("gflops", help="What --target counts: gflops or params."),
    importance: str = typer.Option(
        "var", help="Channel ranking: var (BatchNorm-aware output variance, best here), l1, l2, lamp, bn, fpgm."),
    global_pruning: bool = typer.Option(
        True, "--global/--uniform", help="Rank channels across layers (uneven widths) or prune every layer alike."),
    max_layer_ratio: float = typer.Option(0.6, help="Most of any one layer's channels that may go (0.6 keeps >= 40%)."),
    imgsz: int = typer.Option(640, help="Input size at which GFLOPs are counted."),
    round_to: int = typer.Option(8, help="Keep every width a multiple of this (8 suits TensorRT)."),
    calib: Path | None = typer.Option(
        None, help="Images (data YAML = its train split, folder or .txt): refit the pruned layers by least squares to "
                   "reproduce the teacher's outputs. Recommended."),
    calib_images: int | None = typer.Option(
        None, help=f"How many --calib images to use (default {PruneConfig.calib_images})."),
    refit: bool | None = typer.Option(None, "--refit/--no-refit", help="With --calib: refit the layers (the "
                                         "default; --no-refit: re-estimate BatchNorm statistics only)."),
) -> None:
    """Prune channels of a YOLO detector to a GFLOPs/parameter budget; the student keeps the teacher's weights.

    Then fine-tune it with distillation from the unpruned teacher (`detdistill train --student PRUNED.pt`).

    Example: detdistill prune yolov8s.pt --target 0.5 --calib data.yaml -o yolov8s-half.pt
    """
    try:
        require_present(weights, "weights", CHECKPOINT_FIX)
    except FileNotFoundError as e:
        fail(str(e))
    if weights.suffix.lower() != ".pt":
        fail(f"weights {weights} should end in .pt. {CHECKPOINT_FIX}")

    given = [name for name, value in (("--calib-images", calib_images), ("--refit" if refit else "--no-refit", refit))
             if value is not None]
    if given and calib is None:
        fail(f"{' and '.join(given)} set{'s' * (len(given) == 1)} how the pruned layers are refitted on --calib "
             "images, and no --calib is given: add --calib IMAGES, or leave "
             f"{'it' if len(given) == 1 else 'them'} out")
    try:
        config = PruneConfig(target=target, metric=metric, importance=importance, global_pruning=global_pruning,
                             max_layer_ratio=max_layer_ratio, imgsz=imgsz, round_to=round_to, calib=calib,
                             **{k: v for k, v in (("calib_images", calib_images), ("refit", refit)) if v is not None})
    except PruneConfigError as e:  # named as the option that set it
        fail(f"--{e.field.replace('_', '-')} {e.problem}")
    try:
        res = prune_checkpoint(weights, output, config, log=typer.echo)
    except PruneError as e:
        fail(str(e))
    typer.echo(res.summary())
    for note in res.ignored:
        typer.echo(f"  kept whole: {note}")
    if calib is None:
        typer.secho("note: nothing was refitted (no --calib): the pruned layers keep the teacher's weights and BatchNorm "
                    "statistics, which no longer match, so the pruned model scores far below the teacher until it is "
                    "fine-tuned; --calib IMAGES (a few hundred of your domain) refits them first", err=True)
    if res.untrained_source:  # a structure to try out, not a student: nothing learned to keep, nothing to teach
        typer.secho(f"warning: {weights} holds untrained weights (every BatchNorm layer at its initial statistics), so "
                    f"{res.path} inherits nothing learned and {weights} cannot teach it: prune a trained checkpoint",
                    fg=typer.colors.YELLOW, err=True)
        return
    data = str(calib) if calib is not None and calib.suffix.lower() in (".yaml", ".yml") else "DATA.yaml"
    typer.echo("next: fine-tune the pruned student with distillation from the full teacher:\n"
               f"  detdistill train --teacher {quote(str(weights))} --student {quote(str(res.path))} --data {quote(data)}")


def register(app: typer.Typer) -> None:
    """Add the ``prune`` verb to the main ``detdistill`` app."""
    app.command("prune")(prune)
