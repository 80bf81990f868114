"""What a stage's key tracks of a dataset: its data YAML, and the image and label files of its splits.

Folders are keyed by a listing of their image and label files (relative path, size and modification time, never
their contents), so that a key stays cheap for a dataset of 100k images, while a changed, added or removed image
or label file changes it. Files ultralytics writes beside a dataset (``labels/train.cache``, ``.npy`` image caches)
are not image or label files, and leave keys as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..hashing import text_key


@dataclass(frozen=True)
class DataInput:
    """A data YAML as a stage input: its contents and the image and label folders of its splits."""

    yaml: Path


def folder_listing(folder: Path) -> str:
    """``files:<count>:<digest>`` of the image and label files below ``folder`` (recursive; hidden names skipped):
    a digest of each one's path relative to ``folder``, size and modification time."""
    from ..data.images import IMG_SUFFIXES  # lazy: cv2 (only stages with a dataset need it)

    listed = tuple(IMG_SUFFIXES | {".txt"})
    rows: list[str] = []
    stack, seen = [(folder, "")], set()
    while stack:
        where, rel = stack.pop()
        st = where.stat()
        if (st.st_dev, st.st_ino) in seen:  # a linked folder met twice (or a link loop)
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(where) as entries:
            for entry in entries:
                name = entry.name
                if name[0] == ".":
                    continue
                if entry.is_dir():
                    stack.append((Path(entry.path), f"{rel}{name}/"))
                elif name.lower().endswith(listed):
                    try:
                        st = entry.stat()  # follows a link (a linked image counts by its target)
                    except OSError:  # a dangling link
                        rows.append(f"{rel}{name}\tmissing")
                        continue
                    rows.append(f"{rel}{name}\t{st.st_size}\t{st.st_mtime_ns}")
    rows.sort()
    return f"files:{len(rows)}:{text_key(chr(10).join(rows), 20)}"


def dataset_paths(data: Path) -> list[Path]:
    """The folders (and list files) holding the images and labels of every split of ``data``, in split order.

    A split that is a folder gives it and its label folder; a ``.txt`` image list gives itself (keyed by its
    contents) and the folders of the images it lists, with their label folders; a single image gives itself and its
    label file. A YAML that cannot be read gives none: the stage that reads it reports why."""
    from ..data.dataset import label_path, load_dataset  # lazy: cv2 (only stages with a dataset need it)

    def labels_of(images: Path) -> Path:  # .../images/train -> .../labels/train; a flat folder is its own
        return label_path(images / "x.jpg").parent

    try:
        ds = load_dataset(data)
    except (OSError, ValueError, yaml.YAMLError):
        return []
    out: list[Path] = []
    for entries in ds.splits.values():
        for entry in entries:
            if entry.suffix == ".txt" and entry.is_file():
                try:
                    folders = sorted({p.parent for p in ds.listed_images(entry)})
                except (OSError, ValueError):  # a list that is not text: keyed by its contents alone
                    folders = []
                out += [entry] + [f for folder in folders for f in (folder, labels_of(folder))]
            elif entry.is_file():
                out += [entry, label_path(entry)]
            else:
                out += [entry, labels_of(entry)]
    return list(dict.fromkeys(out))  # each once, in order (a flat split is its own label folder)
