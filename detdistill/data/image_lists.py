"""Image lists from a folder, a .txt list, one image or a dataset YAML (torch-free).

Calibration, parity checks, benchmarks and the unlabeled-data builder all take their images from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import DatasetError, load_dataset, read_image_list
from .images import IMG_SUFFIXES, images_in


def list_images(source: str | Path, limit: int | None = None) -> list[Path]:
    """Images from a folder (recursive), a .txt list (one path a line, relative ones from the list's folder), a
    single image, or a dataset YAML's ``train`` split."""
    if not str(source).strip():  # Path("") is the current folder: never scan it by accident
        raise DatasetError("the image source is empty: pass a folder of images, an image, a .txt list or a data YAML")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"image source {source} does not exist: pass a folder of images, an image or a data YAML")
    if source.suffix.lower() in {".yaml", ".yml"}:
        files = load_dataset(source).images("train")
    elif source.is_dir():
        files = images_in(source)
    elif source.suffix.lower() == ".txt":
        files = read_image_list(source)
        if files and not any(p.exists() for p in files):
            raise FileNotFoundError(f"none of the {len(files)} images listed in {source} exists (the first is read as "
                                    f"{files[0]}): a relative entry of a list is read from the list's folder, "
                                    f"{source.parent.resolve()}; write the entries relative to it, or absolute")
    elif source.suffix.lower() in IMG_SUFFIXES:
        files = [source]
    else:
        raise ValueError(f"{source} is not an image, a folder, a .txt list or a data YAML")
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMG_SUFFIXES))}) found in {source}")
    if limit is not None and len(files) > limit:
        idx = np.linspace(0, len(files) - 1, limit).round().astype(int)  # spread over the set, deterministic
        files = [files[i] for i in idx]
    return files
