"""A sealed test split: every evaluation set is cut once, by a hash of each image's file name, into a
tuning half (every choice: recipe, weights, epochs, INT8 float layers, the checkpoint ultralytics keeps
as best.pt) and a test half (reported numbers only). The cut depends on nothing but the name, so it is the
same on every machine, for every run and for every subset of the images (torch-free). Copies of one
photo (Roboflow exports name them ``<photo>_jpg.rf.<hash>.jpg``) land in the same half.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from .. import atomic

HALVES = ("tune", "test")
SALT = b"detdistill-sealed-split-v1"
_EXPORT_COPY = re.compile(r"\.rf\.[0-9A-Za-z]+$")  # Roboflow's per-copy suffix


def source_name(image: str | Path) -> str:
    """The name of the photo an image file was made from (its stem, export-copy suffix removed)."""
    return _EXPORT_COPY.sub("", Path(image).stem)


def photo_groups(images: Iterable[str | Path]) -> list[str]:
    """The source photo of each image: the groups a bootstrap over these images must draw together."""
    return [source_name(f) for f in images]


def half_of(image: str | Path) -> str:
    """``tune`` or ``test`` for one image, from the SHA-256 of its source photo's name."""
    digest = hashlib.sha256(SALT + source_name(image).encode()).digest()
    return HALVES[digest[0] & 1]


def split_halves(images: Iterable[str | Path]) -> dict[str, list[Path]]:
    """The images of each half, in their given order."""
    out: dict[str, list[Path]] = {h: [] for h in HALVES}
    for f in images:
        out[half_of(f)].append(Path(f))
    return out


def write_half_yaml(data_yaml: str | Path, out_dir: str | Path, split: str = "val", half: str = "tune") -> Path:
    """A copy of ``data_yaml`` whose ``val`` is one half of its ``split`` (absolute image lists in ``out_dir``).

    Training on it lets ultralytics pick best.pt on the tuning half; ``test:`` holds the other half.
    """
    from .dataset import load_dataset, read_data_yaml  # lazy: cv2 (the hash split needs none)

    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    data_yaml = Path(data_yaml).resolve()
    ds = load_dataset(data_yaml)
    halves = split_halves(ds.images(split))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    lists = {}
    for h, files in halves.items():
        if not files:
            raise ValueError(f"the {h} half of {data_yaml}'s {split} split is empty: it needs at least 2 images")
        lists[h] = out_dir / f"{data_yaml.parent.name}-{split}-{h}.txt"
        atomic.write_text(lists[h], "".join(f"{f.resolve()}\n" for f in files))  # concurrent runs share it
    cfg = read_data_yaml(data_yaml)
    cfg.pop("path", None)
    cfg["train"] = [str(p) for p in ds.splits["train"]] if "train" in ds.splits else cfg.get("train")
    cfg["val"] = str(lists[half])
    cfg["test"] = str(lists[HALVES[1 - HALVES.index(half)]])
    out = out_dir / f"{data_yaml.parent.name}-{half}.yaml"
    atomic.write_text(out, yaml.safe_dump(cfg, sort_keys=False))
    return out
