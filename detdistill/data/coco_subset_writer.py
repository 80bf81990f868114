"""Writing a planned COCO subset as a YOLO dataset: the output folder, images and label files, and data.yaml."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .coco_classes import COCO80_NAMES, CocoSubsetError
from .files import link_or_copy

MARKER_KEY = "coco_subset"  # data.yaml block recording how the dataset was made (and that we may rewrite it)
WRITTEN_LIST = ".coco-subset-files"  # the files a run wrote, one relative path per line: a rerun deletes only these


@dataclass
class PlannedImage:
    """One output image: its source file and YOLO label lines (empty for a background image)."""

    src: Path
    lines: list[str]


@dataclass
class SplitPlan:
    """What one split will hold, decided before anything is written."""

    name: str  # output split: train / val
    source: str  # COCO split: train2017 / val2017
    positives: list[PlannedImage] = field(default_factory=list)
    negatives: list[PlannedImage] = field(default_factory=list)
    missing: int = 0
    crowd: int = 0
    empty_boxes: int = 0

    def stats(self) -> dict[str, int | str]:
        """The split's counts as recorded in data.yaml's ``coco_subset.splits``."""
        return {
            "from": self.source,
            "images": len(self.positives) + len(self.negatives),
            "negatives": len(self.negatives),
            "boxes": sum(len(im.lines) for im in self.positives),
            "missing_skipped": self.missing,
            "crowd_skipped": self.crowd,
            "empty_boxes_skipped": self.empty_boxes,
        }


def _foreign_files(out: Path, written: set[str]) -> list[str]:
    """Files under ``out``'s images/ and labels/ that are not in ``written`` (paths relative to ``out``), less the
    ``*.cache`` files ultralytics writes beside the labels (rebuilt by the next training)."""
    found = (f for sub in ("images", "labels") if (out / sub).is_dir() for f in (out / sub).rglob("*"))
    return sorted(rel for f in found if not f.is_dir() and f.suffix != ".cache"
                  and (rel := f.relative_to(out).as_posix()) not in written)


def prepare_out(out: Path) -> None:
    """Create ``out``, or clear the images/labels of a dataset this converter wrote there before; files it did
    not write there (listed in ``WRITTEN_LIST``) make it refuse rather than delete them."""
    data = out / "data.yaml"
    if out.exists() and not out.is_dir():
        raise CocoSubsetError(f"output {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = data.is_file() and MARKER_KEY in (yaml.safe_load(data.read_text()) or {})
        if not ours:
            raise CocoSubsetError(
                f"output folder {out} is not empty and was not written by `detdistill data coco-subset`; "
                "pass an empty or new folder"
            )
        written = out / WRITTEN_LIST
        if written.is_file():  # datasets written before the list existed are replaced whole
            added = _foreign_files(out, set(written.read_text(encoding="utf-8").splitlines()))
            if added:
                raise CocoSubsetError(
                    f"output folder {out} holds {len(added)} file(s) the converter did not write (e.g. {added[0]}), "
                    "which rewriting it would delete: move them out, or write the subset to another folder")
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
        data.unlink()
        written.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def write_split(out: Path, plan: SplitPlan, progress: Any) -> list[str]:
    """Link (or copy) the split's images and write their label files, advancing the ``progress`` bar; return the
    paths written, relative to ``out``."""
    images, labels = out / "images" / plan.name, out / "labels" / plan.name
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    todo = plan.positives + plan.negatives
    task = progress.add_task(f"{plan.source} -> {plan.name}", total=len(todo))
    written = []
    for im in todo:
        link_or_copy(im.src, images / im.src.name)
        (labels / f"{im.src.stem}.txt").write_text("".join(f"{line}\n" for line in im.lines))
        written += [f"images/{plan.name}/{im.src.name}", f"labels/{plan.name}/{im.src.stem}.txt"]
        progress.advance(task)
    return written


def _dump(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


def data_yaml(subset: Sequence[int], plans: Sequence[SplitPlan], provenance: dict) -> str:
    """The data YAML text: split folders relative to its own folder, names, coco_classes, provenance."""
    names = {k: COCO80_NAMES[c] for k, c in enumerate(subset)}
    return "".join([
        "# COCO 2017 class subset written by `detdistill data coco-subset`.\n",
        "# No 'path' key: ultralytics resolves the split folders against this file's folder.\n",
        _dump({p.name: f"images/{p.name}" for p in plans}),
        _dump({"names": names}),
        "# Each class's COCO class (0-79 ids, ultralytics' coco.yaml order), read by `detdistill train`\n",
        "# to map a COCO-trained teacher's classes onto this dataset's.\n",
        "coco_classes:\n",
        "".join(f"  {k}: [{c}]  # {COCO80_NAMES[c]}\n" for k, c in enumerate(subset)),
        "# How this dataset was made (rerunning the converter into this folder replaces it).\n",
        _dump({MARKER_KEY: provenance}),
    ])


def progress_bar(enabled: bool) -> Any:
    """A rich progress bar on stderr (disabled: draws nothing)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), disable=not enabled)
