"""A YOLO-format dataset YAML: splits, image files and their labels (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .images import images_in

SPLITS = ("train", "val", "test")  # the split keys of a YOLO data YAML


@dataclass
class YoloDataset:
    """Dataset YAML resolved to absolute paths."""

    root: Path
    splits: dict[str, list[Path]]
    names: dict[int, str]

    def images(self, split: str) -> list[Path]:
        """All image files of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in self.splits:
            raise KeyError(f"the data YAML has no '{split}' split (it has {', '.join(self.splits) or 'none'})")
        files: list[Path] = []
        for entry in self.splits[split]:
            if entry.is_dir():
                files += images_in(entry)
            elif entry.suffix == ".txt":
                lines = [x.strip() for x in entry.read_text().splitlines() if x.strip()]
                files += [Path(x) if Path(x).is_absolute() else (self.root / x) for x in lines]
            elif entry.exists():
                files.append(entry)
            else:
                raise FileNotFoundError(f"split '{split}' path {entry} does not exist")
        if not files:
            raise FileNotFoundError(f"no images found for split '{split}' in {self.splits[split]}")
        return files


def label_path(image: Path) -> Path:
    """``.../images/x.jpg`` -> ``.../labels/x.txt`` (YOLO convention)."""
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(image: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one image: class ids ``(M,)`` and xyxy pixel boxes ``(M, 4)``."""
    f = label_path(image)
    if not f.is_file():
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    rows = [line.split() for line in f.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    a = np.array([r[:5] for r in rows], dtype=np.float32)
    h, w = shape
    cx, cy, bw, bh = a[:, 1] * w, a[:, 2] * h, a[:, 3] * w, a[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    return a[:, 0].astype(np.int64), boxes


def load_dataset(path: str | Path) -> YoloDataset:
    """Parse a YOLO dataset YAML; relative paths resolve against ``path:`` or the YAML's folder."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"dataset YAML {path} not found")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise ValueError(f"{path} has no 'names' key; a YOLO data YAML needs names and train/val paths")
    root = Path(cfg.get("path") or path.parent)
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    names = cfg["names"]
    try:
        names = dict(enumerate(map(str, names))) if isinstance(names, list) else \
            {int(k): str(v) for k, v in names.items()}
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{path}: 'names' must be a list of class names or a mapping of class id to name, e.g. "
                         f"names: {{0: car, 1: bus}}; got {names!r}"[:300]) from None
    splits = {}
    for split in SPLITS:
        v = cfg.get(split)
        if v:
            entries = v if isinstance(v, list) else [v]
            splits[split] = [Path(e) if Path(e).is_absolute() else root / e for e in entries]
    return YoloDataset(root=root, splits=splits, names=names)
