"""``detdistill weights list|fetch``: the registry of known teacher checkpoints (``register(app)`` adds it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from detdistill.cli_errors import fail

weights_app = typer.Typer(
    name="weights",
    help="Known teacher checkpoints: list them, or fetch one by name (e.g. --teacher yolov8s).",
    no_args_is_help=True,
    add_completion=False,
)

_DIR_HELP = "Folder searched first (and where downloads go); also settable with DETDISTILL_WEIGHTS."


@weights_app.command("list")
def list_weights(
    dir: Optional[Path] = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """List the registry: name, family, classes, size, file, and where it is on this machine.

    Example: detdistill weights list
    """
    # lazy: the CLI starts fast without it
    from detdistill.registry.weights import (
        ENV_DIR, WeightsError, check_folders, find_local, list_registry, search_dirs)

    if dir is not None and not dir.is_dir():
        fail(f"--dir {dir} is not a folder here: pass the folder that holds your checkpoints (or leave --dir out)")
    try:
        check_folders(None)  # DETDISTILL_WEIGHTS naming a file
    except WeightsError as e:
        fail(str(e))
    try:
        entries = list_registry()
    except (OSError, ValueError) as e:
        fail(f"could not read the weights registry: {e}")
    rows = [("NAME", "FAMILY", "CLASSES", "PARAMS", "GFLOPS", "FILE", "LOCAL")]
    for e in entries:
        local = find_local(e, dir)
        rows.append((
            e.name, e.family, e.classes_label,
            f"{e.params_m:g}M" if e.params_m is not None else "-",
            f"{e.gflops:g}" if e.gflops is not None else "-",
            e.file, str(local) if local else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    typer.echo(f"\nsearched: {', '.join(str(d) for d in search_dirs(dir))}")
    env = os.environ.get(ENV_DIR)
    if env and not Path(env).expanduser().is_dir():
        typer.echo(f"warning: {ENV_DIR}={env} does not exist here (a typo?): nothing is found there, and a download "
                   "would create it", err=True)
    typer.echo("missing ones download on first use (`detdistill weights fetch NAME`) unless YOLO_OFFLINE is set")
    fixtures = [e.name for e in entries if e.url is None]
    if fixtures:
        typer.echo(f"except {', '.join(fixtures)}: test files, never downloaded; the test suite copies "
                   f"{'it' if len(fixtures) == 1 else 'them'} from its fixtures folder")


@weights_app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="Registry name (yolov8s, yolo11m, ...; see `detdistill weights list`)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help=_DIR_HELP),
) -> None:
    """Find a checkpoint locally or download it, check its sha256, and print its path and sha256.

    Example: detdistill weights fetch yolov8s --dir weights
    """
    from detdistill.registry.weights import WeightsError, file_sha256, resolve_weights  # lazy: as in list_weights

    try:
        path = resolve_weights(name, weights_dir=dir)
    except (WeightsError, OSError, ValueError) as e:
        fail(str(e))
    typer.echo(f"{path}")
    typer.echo(f"sha256 {file_sha256(path)}")


def register(app: typer.Typer) -> None:
    """Add the ``weights`` command group to ``app``."""
    app.add_typer(weights_app, name="weights")
