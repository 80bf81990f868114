"""Image files: which suffixes count, finding them below a folder, reading and checking one (torch-free)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class ImageError(ValueError):
    """An image that cannot be read, or a set of images none of which can."""


IMG_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def images_in(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMG_SUFFIXES)


def decode_checked(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """``path`` decoded as uint8 BGR, or ``None`` and why it is not a usable image (missing, unreadable, truncated).

    OpenCV decodes a truncated JPEG or PNG without an error (the missing part comes out grey), so the
    end-of-image marker is checked first.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(path.stat().st_size - 256, 0))
            tail = f.read().rstrip(b"\x00\r\n ")
    except OSError as e:
        return None, f"cannot be opened ({e.strerror or e})"
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail[-64:]:
        return None, "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail[-16:]:
        return None, "truncated PNG (no IEND chunk)"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None, "not an image OpenCV can decode"
    return img, None


def image_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file as stored (EXIF orientation not applied), from its header where Pillow
    is installed (else decoded); None when it cannot be read."""
    try:
        from PIL import Image  # lazy: Pillow is optional (it comes with ultralytics); it reads the header only
    except ImportError:  # pragma: no cover - Pillow comes with ultralytics
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return None if img is None else (int(img.shape[1]), int(img.shape[0]))
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a usable image (:func:`decode_checked`), or ``None``."""
    return decode_checked(path)[1]


def usable_images(files: Sequence[Path], what: str = "images") -> tuple[list[Path], str | None]:
    """The usable images of ``files`` (:func:`image_problem`) and a note on those left out (``None`` when none
    was); raises :class:`ImageError` naming the first problem when none is usable. ``what`` names them in messages."""
    problems = {Path(f): image_problem(f) for f in files}
    return [f for f, why in problems.items() if why is None], _left_out(problems, what)


def read_usable_images(files: Sequence[Path], what: str = "images",
                       transform: Callable[[np.ndarray], Any] | None = None) -> tuple[list[Any], str | None]:
    """As :func:`usable_images`, but the usable images decoded (BGR), each file read once; with ``transform``, what
    it makes of each image as soon as it is decoded (so that only one full-size image is held at a time)."""
    kept: list[Any] = []
    problems: dict[Path, str | None] = {}
    for f in files:
        img, problems[Path(f)] = decode_checked(f)
        if img is not None:
            kept.append(transform(img) if transform else img)
    return kept, _left_out(problems, what)


def _left_out(problems: dict[Path, str | None], what: str) -> str | None:
    """A note on the files of ``problems`` that have one (``None`` when none has); raises :class:`ImageError` when
    there are no files or none is usable."""
    bad = [(f, why) for f, why in problems.items() if why is not None]
    if not problems:
        raise ImageError(f"no {what} given: pass a folder of images (JPEG, PNG, ...)")
    if len(bad) == len(problems):
        f, why = bad[0]
        raise ImageError(f"none of the {len(problems)} {what} is usable ({f}: {why}); pass a folder of intact "
                         "images (JPEG, PNG, ...)")
    if not bad:
        return None
    f, why = bad[0]
    return f"skipped {len(bad)} of {len(problems)} {what} that cannot be used (first: {f}: {why})"


def read_bgr(path: str | Path) -> np.ndarray:
    """Read an image as uint8 BGR, failing clearly when it cannot be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"could not read image {path} (missing or not an image)")
    return img
