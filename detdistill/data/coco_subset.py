"""Turn a COCO 2017 download into a YOLO-format dataset holding only some of its 80 classes.

Input is the standard layout (``annotations/instances_{train,val}2017.json`` plus ``train2017/`` and
``val2017/``, or ``images/train2017/`` ...). Output is ``out/images/{train,val}``, ``out/labels/{train,val}``
and ``out/data.yaml`` with the subset's ``names`` and a ``coco_classes:`` block that maps each subset class
to its COCO class (contiguous 0-79 ids, the order of ultralytics' ``coco.yaml``), so a COCO-trained teacher
distils into the subset without a ``--class-map``.

Rules: crowd annotations (``iscrowd: 1``) are skipped, boxes are clipped to the image and dropped when
empty; an image whose only annotations of the chosen classes are crowd or empty boxes is left out
(neither a positive nor a background image). Train and val come from their own COCO split only. Each image is
written under its file name alone (a ``file_name``'s folders are dropped), so two that would share an output
name are refused before anything is written. The output folder is marked as the converter's before its files
are written (their list) and data.yaml is written last, so a rerun replaces an interrupted conversion.

This module chooses each split's images and runs the conversion; the class tables and presets are in
:mod:`detdistill.data.coco_classes`, reading the download in :mod:`detdistill.data.coco_annotations`, writing
the dataset in :mod:`detdistill.data.coco_subset_writer`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console

from .coco_annotations import (
    LAYOUT_HINT,
    category_map,
    collect_labels,
    find_split,
    load_instances,
    split_name,
    yolo_line,
)
from .coco_classes import (
    COCO80_CATEGORY_IDS,
    COCO80_NAMES,
    PRESETS_DIR,
    CocoSubsetError,
    chosen_classes,
    list_presets,
    load_preset,
    resolve_class,
    resolve_classes,
)
from .coco_subset_writer import (MARKER_KEY, PlannedImage, SplitPlan, check_output_names, data_yaml, prepare_out,
                                 progress_bar, write_split)
from .images import image_size

__all__ = [  # the converter's API, importable from here
    "COCO80_CATEGORY_IDS",
    "COCO80_NAMES",
    "LAYOUT_HINT",
    "MARKER_KEY",
    "PRESETS_DIR",
    "CocoSubsetError",
    "chosen_classes",
    "find_split",
    "list_presets",
    "load_preset",
    "make_coco_subset",
    "resolve_class",
    "resolve_classes",
    "split_budget",
    "split_name",
    "yolo_line",
]

log = logging.getLogger(__name__)


def _wanted_negatives(n_pos: int, include_empty: float | int) -> int:
    return round(n_pos * include_empty) if isinstance(include_empty, float) else include_empty


def split_budget(n_pos: int, n_neg: int, max_images: int | None, include_empty: float | int) -> tuple[int, int]:
    """How many positive and background images to keep; ``max_images`` caps both together, keeping their ratio."""
    pos = n_pos if max_images is None else min(n_pos, max_images)
    neg = min(n_neg, _wanted_negatives(pos, include_empty))
    if max_images is not None and pos + neg > max_images:
        scaled = max(min(pos, 1), round(max_images * pos / (pos + neg)))
        pos, neg = scaled, min(neg, max_images - scaled)
    return pos, neg


def _pick(ids: list[int], k: int, rng: random.Random) -> list[int]:
    return sorted(rng.sample(ids, k))


def _image_file(image_dir: Path, file_name: str) -> Path:
    """An image's file: ``file_name`` under the split's image folder, or, for a name that starts with that
    folder's own name (``train2017/x.jpg``), under its parent when only that file exists."""
    path = image_dir / file_name
    if Path(file_name).parts[:1] == (image_dir.name,) and not path.is_file():
        prefixed = image_dir.parent / file_name
        if prefixed.is_file():
            return prefixed
    return path


def _plan_split(
    ann: Path, image_dir: Path, subset: Sequence[int], max_images: int | None, include_empty: float | int, seed: int
) -> SplitPlan:
    """Read one split's annotations and choose its images (deterministic for a seed)."""
    source = image_dir.name
    coco = load_instances(ann)
    labels = collect_labels(coco, category_map(coco["categories"], subset, ann), ann)
    files = {im["id"]: _image_file(image_dir, im["file_name"]) for im in coco["images"]}
    sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    del coco
    plan = SplitPlan(split_name(source), source, crowd=labels.crowd, empty_boxes=labels.empty_boxes)

    pos_ids = sorted(labels.lines)
    neg_ids = sorted(set(files) - labels.touched)
    present_pos = [i for i in pos_ids if files[i].is_file()]
    present_neg = [i for i in neg_ids if files[i].is_file()]
    plan.missing = len(pos_ids) - len(present_pos) + len(neg_ids) - len(present_neg)
    _check_found(plan, ann, image_dir, subset, pos_ids, present_pos, files, labels.why_none())
    if plan.missing:
        example = next(files[i] for i in pos_ids + neg_ids if not files[i].is_file())
        log.warning(f"{source}: {plan.missing} image(s) listed in {ann.name} are not on disk (e.g. {example}); skipped")

    n_pos, n_neg = split_budget(len(present_pos), len(present_neg), max_images, include_empty)
    rng = random.Random(f"{seed}:{source}")
    plan.positives = _sized_as_annotated([PlannedImage(i, files[i], labels.lines[i])
                                          for i in _pick(present_pos, n_pos, rng)], sizes, plan, ann)
    plan.negatives = [PlannedImage(i, files[i], []) for i in _pick(present_neg, n_neg, rng)]
    check_output_names(plan, ann)
    return plan


def _sized_as_annotated(images: list[PlannedImage], sizes: dict[int, tuple[float, float]], plan: SplitPlan,
                        ann: Path) -> list[PlannedImage]:
    """``images`` whose file has the width and height the annotations give (or both swapped, an EXIF rotation):
    the boxes are scaled by those, so an image resized after annotation would get wrong labels. The others are
    left out with a warning (``plan.resized``); none left is an error."""
    kept, wrong = [], []
    for im in images:
        on_disk, annotated = image_size(im.src), tuple(round(v) for v in sizes[im.image_id])
        (kept if on_disk is None or on_disk in (annotated, annotated[::-1]) else wrong).append((im, on_disk))
    plan.resized = len(wrong)
    if wrong:
        (im, (w, h)) = wrong[0]
        what = (f"{len(wrong)} of the {len(images)} chosen {plan.source} images are not the size {ann.name} gives "
                f"(e.g. {im.src}: {w}x{h} on disk, {sizes[im.image_id][0]:g}x{sizes[im.image_id][1]:g} in the "
                "annotations), so their boxes would be scaled wrong")
        if not kept:
            raise CocoSubsetError(f"{what}; use the images the annotations were made for, or fix width and height "
                                  f"in {ann.name}")
        log.warning(f"{what}; skipped")
    return [im for im, _ in kept]


def _check_found(
    plan: SplitPlan, ann: Path, image_dir: Path, subset: Sequence[int], pos_ids: list[int], present_pos: list[int],
    files: dict[int, Path], why_none: str = "",
) -> None:
    """Raise if the split has no image with a chosen class (``why_none``: what became of their annotations), or
    none of them is on disk."""
    names = [COCO80_NAMES[c] for c in subset]
    if not pos_ids:
        raise CocoSubsetError(f"no image in {ann.name} has a (non-crowd) box of {names}"
                              + (f": {why_none}" if why_none else ""))
    if not present_pos:
        raise CocoSubsetError(
            f"none of the {len(pos_ids)} {plan.source} images with {names} is in {image_dir} (e.g. image "
            f"{pos_ids[0]}: no file {files[pos_ids[0]]}); unzip {plan.source}.zip there, or fix the file_names "
            f"in {ann.name}"
        )


def _reading(ann: Path, enabled: bool) -> Any:
    """A spinner while a (large: 450 MB for train2017) annotation file is read, when progress is on."""
    if not enabled:
        return nullcontext()
    return Console(stderr=True).status(f"reading {ann.name} ({ann.stat().st_size / 1e6:.0f} MB) ...")


def _check_options(max_images: int | None, include_empty: float | int, splits: Sequence[str]) -> None:
    """Raise on a bad ``max_images``, ``include_empty`` or ``splits`` (before anything is read)."""
    if max_images is not None and max_images < 1:
        raise CocoSubsetError(f"max_images must be at least 1, got {max_images}")
    if isinstance(include_empty, bool) or not isinstance(include_empty, (int, float)) or include_empty < 0:
        raise CocoSubsetError(
            f"include_empty must be a fraction of the kept images (float, e.g. 0.1) or a count (int) >= 0, "
            f"got {include_empty!r}"
        )
    names = [split_name(s) for s in splits]
    if not splits or len(set(names)) != len(names):
        raise CocoSubsetError(f"splits must name distinct COCO splits such as train2017, val2017; got {list(splits)}")


def make_coco_subset(
    coco_dir: Path,
    out: Path,
    classes: Sequence[str | int],
    max_images: int | None = None,
    splits: Sequence[str] = ("train2017", "val2017"),
    include_empty: float | int = 0.1,
    progress: bool = True,
    seed: int = 0,
) -> Path:
    """Write a YOLO dataset of the chosen COCO classes to ``out`` and return its ``data.yaml``.

    Args:
        coco_dir: COCO 2017 download (``annotations/``, ``train2017/``, ``val2017/``).
        out: output folder; new, empty, or one this function wrote before (then replaced).
        classes: COCO class names (case-insensitive) or 0-79 ids; their order sets the subset's class ids.
        max_images: cap on the images per split (background images included), chosen at random with ``seed``.
        splits: COCO splits to convert; ``train2017`` -> ``train``, ``val2017`` -> ``val``.
        include_empty: background images (none of the classes) to keep per split: a float is a fraction of
            the kept images with objects (0.1 = 10 %), an int a count; 0 keeps none.
        progress: show a progress bar on stderr.
        seed: seed of the random image selection.

    Raises:
        CocoSubsetError: wrong layout, malformed annotations, unknown or no class, no image found, two images
            with one output name, non-empty foreign ``out``.
    """
    coco_dir, out = Path(coco_dir).expanduser().resolve(), Path(out).expanduser()
    subset = resolve_classes(classes)
    _check_options(max_images, include_empty, splits)
    if not coco_dir.is_dir():
        problem = "is a file, not a folder" if coco_dir.exists() else "does not exist"
        raise CocoSubsetError(f"COCO folder {coco_dir} {problem}; {LAYOUT_HINT}")
    layout = [find_split(coco_dir, s) for s in splits]
    plans = []
    for ann, images in layout:
        with _reading(ann, progress):
            plans.append(_plan_split(ann, images, subset, max_images, include_empty, seed))

    prepare_out(out, [f for plan in plans for f in plan.files()])  # marks out as ours before writing into it
    with progress_bar(progress) as bar:
        for plan in plans:
            write_split(out, plan, bar)
    provenance = {"coco": str(coco_dir), "seed": seed, "max_images": max_images, "include_empty": include_empty,
                  "splits": {p.name: p.stats() for p in plans}}
    data = out / "data.yaml"
    data.write_text(data_yaml(subset, plans, provenance))  # last: a folder without it is an unfinished conversion
    return data
