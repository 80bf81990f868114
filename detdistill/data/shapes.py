"""A generated detection dataset (coloured shapes on textured backgrounds) in YOLO format.

It needs no download, so the quickstart and smoke tests run on any machine: three classes that a
small detector learns within minutes on a CPU, with boxes known exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour gradient plus noise and a few faint lines (clutter that is not an object)."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
    img = (c0 * (1 - t) + c1 * t).repeat(size, 0)
    img += rng.normal(0, 12, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 4)):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(img, tuple(map(int, p1)), tuple(map(int, p2)), tuple(int(v) for v in rng.integers(0, 256, 3)), 1)
    return img


def _draw(img: np.ndarray, cls: int, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> tuple[float, ...]:
    """Draw one shape, return its box as (x1, y1, x2, y2) in pixels."""
    if cls == 0:
        cv2.circle(img, (int(cx), int(cy)), int(r), color, -1, cv2.LINE_AA)
        return cx - r, cy - r, cx + r, cy + r
    if cls == 1:
        cv2.rectangle(img, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), color, -1)
        return cx - r, cy - r, cx + r, cy + r
    pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
    cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    return cx - r, cy - r, cx + r, cy + r


def make_image(rng: np.random.Generator, size: int, max_objects: int = 4) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """One image and its labels ``(cls, x1, y1, x2, y2)``; objects do not overlap."""
    img = _background(rng, size)
    boxes: list[tuple] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(10):
            r = float(rng.uniform(size * 0.06, size * 0.2))
            cx, cy = rng.uniform(r, size - r, 2)
            if all(cx + r < b[1] or cx - r > b[3] or cy + r < b[2] or cy - r > b[4] for b in boxes):
                cls = int(rng.integers(0, len(CLASSES)))
                color = tuple(int(v) for v in rng.integers(0, 256, 3))
                boxes.append((cls, *_draw(img, cls, cx, cy, r, color)))
                break
    return img, boxes


def make_shapes_dataset(root: str | Path, n_train: int = 300, n_val: int = 60, size: int = 192, seed: int = 0) -> Path:
    """Write the dataset under ``root`` (images/, labels/, data.yaml); return the YAML path.

    A complete dataset made with the same settings is reused (the YAML, which names them, is written last); one
    made with other settings, or left half-written, is replaced.
    """
    root = Path(root)
    yaml_path = root / "data.yaml"
    made_with = f"# detdistill shapes: n_train={n_train} n_val={n_val} size={size} seed={seed}\n"
    if yaml_path.is_file() and yaml_path.read_text(encoding="utf-8", errors="replace").startswith(made_with):
        return yaml_path
    yaml_path.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for folder in ("images", "labels"):  # no image of other settings may stay beside the new ones
            shutil.rmtree(root / folder / split, ignore_errors=True)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, boxes = make_image(rng, size)
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), img)
            lines = [
                f"{c} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} {(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}"
                for c, x1, y1, x2, y2 in boxes
            ]
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    # no path key: the splits resolve against this file's folder, so the dataset can move
    yaml_path.write_text(f"{made_with}train: images/train\nval: images/val\nnames:\n{names}\n")
    return yaml_path
