"""CLI verbs that build datasets: ``detdistill data coco-subset`` and ``detdistill data presets``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from ..cli_errors import fail, path_parser

data_app = typer.Typer(help="Build YOLO datasets (e.g. a COCO class subset) for training and calibration.",
                       no_args_is_help=True)


def _class_list(classes: Optional[str], preset: Optional[str]) -> tuple[list[str], str]:
    """The classes to keep and a short name for the default output folder."""
    from .coco_classes import CocoSubsetError, chosen_classes, list_presets  # lazy: the CLI starts fast without it

    if classes and preset:
        fail("pass either --classes or --preset, not both")
    if not classes and not preset:
        fail(f"no classes: pass --classes 'car,bus' (COCO names or 0-79 ids) or --preset "
             f"({', '.join(list_presets())})")
    try:
        return chosen_classes(classes, preset)  # --classes road works like --preset road
    except CocoSubsetError as e:
        fail(str(e))


def negative_images(text: str) -> float | int:
    """``--negatives`` as ``make_coco_subset`` takes it, read as a recipe reads the number: ``0.1`` or ``1.0`` a
    fraction of the images with objects, ``50`` a count. ``ValueError`` for anything else."""
    value = text.strip()
    try:
        number = int(value) if value.isdigit() else float(value)
    except ValueError:
        number = -1
    if not number >= 0 or number == float("inf"):  # also NaN
        raise ValueError(f"--negatives {text!r}: give a fraction of the images with objects with a decimal point "
                         "(0.1 adds one background image per ten), or a whole number of images (50)")
    return number


def _slug(names: list[str]) -> str:
    return "-".join(re.sub(r"\W+", "-", n.lower()).strip("-") for n in names)


def coco_subset(
    coco: Path = typer.Option(..., "--coco", help="COCO 2017 folder: annotations/, train2017/, val2017/.",
                              parser=path_parser("--coco", "the COCO 2017 folder"), metavar="PATH"),
    classes: Optional[str] = typer.Option(
        None, "--classes", "-c", help="Comma-separated COCO class names or 0-79 ids, e.g. 'car,bus,traffic light', "
        "or a preset name."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Built-in class preset (see `detdistill data "
                                         "presets`) or a YAML with a classes: list."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Cap on images per split "
                                             "(background images included), chosen at random with --seed."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: datasets/coco-<preset "
                                       "or classes>)."),
    negatives: str = typer.Option("0.1", "--negatives", help="Background images (none of the classes) to add per "
                                  "split: with a decimal point a fraction of the images with objects (0.1, 1.0), a "
                                  "whole number a count (50), as in a pipeline recipe."),
    seed: int = typer.Option(0, help="Seed of the random image selection."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Convert a COCO 2017 download to a YOLO dataset of some classes, with a coco_classes block for a COCO teacher.

    Example: detdistill data coco-subset --coco ~/data/coco --preset road --max-images 5000
    """
    from .coco_classes import COCO80_NAMES, CocoSubsetError, resolve_classes  # lazy: the CLI starts fast without it
    from .coco_subset import make_coco_subset
    from .coco_subset_writer import MARKER_KEY  # lazy: as above
    from .dataset import read_data_yaml  # lazy: as above

    items, name = _class_list(classes, preset)
    try:
        include_empty = negative_images(negatives)
    except ValueError as e:
        fail(str(e))
    try:
        ids = resolve_classes(items)
        out = out or Path("datasets") / f"coco-{name or _slug([COCO80_NAMES[i] for i in ids])}"
        data = make_coco_subset(coco, out, ids, max_images=max_images, include_empty=include_empty, progress=progress,
                                seed=seed)
    except CocoSubsetError as e:
        fail(str(e))
    for split, s in read_data_yaml(data)[MARKER_KEY]["splits"].items():
        skipped = f"; skipped {s['missing_skipped']} missing image(s)" if s["missing_skipped"] else ""
        if s.get("other_size_skipped"):
            skipped += f"; skipped {s['other_size_skipped']} image(s) not of their annotated size"
        typer.echo(f"{split}: {s['images']} images ({s['negatives']} background), {s['boxes']} boxes, "
                   f"{s['crowd_skipped']} crowd boxes skipped{skipped}")
    typer.echo(f"wrote {data}")


def presets() -> None:
    """List the built-in class presets for `detdistill data coco-subset --preset`."""
    from .coco_classes import list_presets, load_preset  # lazy: the CLI starts fast without it

    for name in list_presets():
        typer.echo(f"{name:10s} {', '.join(load_preset(name))}")


data_app.command("coco-subset")(coco_subset)
data_app.command("presets", epilog="Example: detdistill data presets   (then: detdistill data coco-subset --preset road ...)")(presets)


def register(app: typer.Typer) -> None:
    """Add the ``data`` verbs to the main ``detdistill`` app."""
    app.add_typer(data_app, name="data")
