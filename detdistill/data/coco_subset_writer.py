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
from .dataset import read_data_yaml
from .files import link_or_copy

MARKER_KEY = "coco_subset"  # data.yaml block recording how the dataset was made (and that we may rewrite it)
# The files a run writes, one relative path per line, written before any of them: it marks the folder as the
# converter's from the start (a rerun after an interruption may replace it), and a rerun deletes only these.
WRITTEN_LIST = ".coco-subset-files"


@dataclass
class PlannedImage:
    """One output image: its COCO image id, source file and YOLO label lines (empty for a background image)."""

    image_id: int
    src: Path
    lines: list[str]

    def outputs(self, split: str) -> tuple[str, str]:
        """Its image and label file in the dataset, relative to the dataset folder (named after the file alone)."""
        return f"images/{split}/{self.src.name}", f"labels/{split}/{self.src.stem}.txt"


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
    resized: int = 0  # images whose size on disk is not the annotations' (their boxes would land wrong)

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
            "other_size_skipped": self.resized,
        }

    def files(self) -> list[str]:
        """The files the split will write, relative to the dataset folder."""
        return [f for im in self.positives + self.negatives for f in im.outputs(self.name)]


def check_output_names(plan: SplitPlan, ann: Path) -> None:
    """Raise if two of the split's images would be written to the same image or label file: outputs are named
    after the file alone, so ``a/x.jpg`` and ``b/x.jpg`` both become ``x.jpg``, and ``x.jpg``, ``x.png`` share
    ``x.txt``. Checked before anything is written (``ann`` is the annotation file, for the message)."""
    by_label: dict[str, PlannedImage] = {}
    for im in plan.positives + plan.negatives:
        image, label = im.outputs(plan.name)
        first = by_label.setdefault(label, im)
        if first is not im:
            clash = image if first.src.name == im.src.name else label
            fix = (f"remove one of the two entries from {ann.name}" if first.src == im.src
                   else f"rename one of the two files and its file_name in {ann.name}")
            raise CocoSubsetError(
                f"{ann}: image {first.image_id} ({first.src}) and image {im.image_id} ({im.src}) would both be "
                f"written to {clash} (the dataset names each image after its file name, without its folder); {fix}")


def _foreign_files(out: Path, written: set[str]) -> list[str]:
    """Files under ``out``'s images/ and labels/ that are not in ``written`` (paths relative to ``out``), less the
    ``*.cache`` files ultralytics writes beside the labels (rebuilt by the next training)."""
    found = (f for sub in ("images", "labels") if (out / sub).is_dir() for f in (out / sub).rglob("*"))
    return sorted(rel for f in found if not f.is_dir() and f.suffix != ".cache"
                  and (rel := f.relative_to(out).as_posix()) not in written)


def _has_marker(data: Path) -> bool:
    """Whether ``data`` is a data.yaml this converter wrote (it has the ``MARKER_KEY`` block)."""
    try:
        return MARKER_KEY in read_data_yaml(data)
    except (OSError, ValueError, yaml.YAMLError):
        return False


def prepare_out(out: Path, files: Sequence[str]) -> None:
    """Create ``out``, or clear what this converter wrote there before (also by an interrupted run), then list
    ``files`` (relative to ``out``, about to be written) in ``WRITTEN_LIST``. Files the earlier run did not write
    under images/ or labels/ make it refuse rather than delete them, and so does a folder it did not write."""
    data, written = out / "data.yaml", out / WRITTEN_LIST
    if out.exists() and not out.is_dir():
        raise CocoSubsetError(f"output {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (written.is_file() or _has_marker(data)):
            raise CocoSubsetError(
                f"output folder {out} is not empty and was not written by `detdistill data coco-subset`; "
                "pass an empty or new folder"
            )
        if written.is_file():  # datasets written before the list existed are replaced whole
            added = _foreign_files(out, set(written.read_text(encoding="utf-8").splitlines()))
            if added:
                raise CocoSubsetError(
                    f"output folder {out} holds {len(added)} file(s) the converter did not write (e.g. {added[0]}), "
                    "which rewriting it would delete: move them out, or write the subset to another folder")
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
        data.unlink(missing_ok=True)  # an interrupted run wrote none (it is written last)
    out.mkdir(parents=True, exist_ok=True)
    written.write_text("".join(f"{path}\n" for path in files), encoding="utf-8")  # replaces the old list


def write_split(out: Path, plan: SplitPlan, progress: Any) -> None:
    """Link (or copy) the split's images and write their label files into new folders, advancing the
    ``progress`` bar (the output names are unique: see :func:`check_output_names`)."""
    (out / "images" / plan.name).mkdir(parents=True)
    (out / "labels" / plan.name).mkdir(parents=True)
    todo = plan.positives + plan.negatives
    task = progress.add_task(f"{plan.source} -> {plan.name}", total=len(todo))
    for im in todo:
        image, label = im.outputs(plan.name)
        link_or_copy(im.src, out / image)
        (out / label).write_text("".join(f"{line}\n" for line in im.lines))
        progress.advance(task)


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
