"""Student architectures: an ultralytics model family at a custom width and depth."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ultralytics
import yaml


def scaled_model_yaml(family: str = "yolov8", width: float = 0.0625, depth: float = 0.33, out: str | Path | None = None) -> Path:
    """Write ``family`` (e.g. ``yolov8``, ``yolo11``) at the given width/depth multiples as a model YAML.

    ultralytics' ``yolov8n`` is width 0.25, depth 0.33; width 0.0625 is a quarter of it. The YAML keeps
    the family's own layer definition (read from the installed ultralytics) and replaces its scale
    table with one row, ``n``; the file name starts with ``<family>n`` so ultralytics selects that row.
    """
    cfg_root = Path(ultralytics.__file__).parent / "cfg" / "models"
    matches = sorted(cfg_root.glob(f"*/{family}.yaml"))
    if not matches:
        raise FileNotFoundError(f"no ultralytics model family {family!r} (e.g. yolov8, yolo11, yolo26)")
    cfg = yaml.safe_load(matches[0].read_text())
    cfg["scales"] = {"n": [depth, width, cfg["scales"]["n"][2]]}
    out = Path(out) if out else Path(tempfile.mkdtemp()) / f"{family}n-w{width:g}-d{depth:g}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
