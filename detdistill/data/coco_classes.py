"""COCO's 80 detection classes: their names and json category ids, the class presets, and resolving a user's
class names or ids."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from ..names import class_key

PRESETS_DIR = Path(__file__).parent / "presets"

# The names and ids are written out (not read from ultralytics' coco.yaml and coco80_to_coco91_class) so that
# building a dataset needs no torch or ultralytics; tests check that they agree.
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
# COCO json category ids (1..90 with gaps) of the 80 classes above, in the same (sorted) order.
_ID_RANGES = ((1, 11), (13, 25), (27, 28), (31, 44), (46, 65), (67, 67), (70, 70), (72, 82), (84, 90))
COCO80_CATEGORY_IDS: tuple[int, ...] = tuple(i for lo, hi in _ID_RANGES for i in range(lo, hi + 1))


class CocoSubsetError(ValueError):
    """Bad input to the COCO subset converter; the message names the problem and the fix."""


_BY_NAME = {class_key(n): i for i, n in enumerate(COCO80_NAMES)}


def list_presets() -> list[str]:
    """Names of the built-in class presets (``detdistill/data/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(preset: str | Path) -> list[str]:
    """Class list of a built-in preset (e.g. ``road``) or of a preset YAML file with a ``classes:`` list."""
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        if Path(preset).suffix in (".yaml", ".yml"):
            raise CocoSubsetError(f"preset file {preset} does not exist; pass a YAML with a classes: list, or a "
                                  f"built-in preset: {', '.join(list_presets())}")
        raise CocoSubsetError(f"no class preset {str(preset)!r}; built-in presets: {', '.join(list_presets())}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise CocoSubsetError(f"preset {path} is not a readable YAML file ({type(e).__name__}); it needs a "
                              "`classes:` list of COCO class names") from None
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not classes:
        raise CocoSubsetError(f"preset {path} needs a non-empty `classes:` list of COCO class names")
    for c in classes:  # named with the file, which the class list came from
        try:
            resolve_class(c)
        except CocoSubsetError as e:
            raise CocoSubsetError(f"preset {path}: {e}") from None
    return [str(c) for c in classes]


def chosen_classes(classes: str | Sequence[str | int] | None, preset: str | Path | None) -> tuple[list, str]:
    """The classes to keep and the preset's name ('' for none): ``preset`` if given, else ``classes`` (a list or
    a comma-separated string; a lone preset name that is no COCO class, e.g. ``road``, picks that preset)."""
    items = [c.strip() for c in classes.split(",") if c.strip()] if isinstance(classes, str) else list(classes or [])
    if not preset and len(items) == 1 and str(items[0]) in list_presets():
        try:
            resolve_class(items[0])
        except CocoSubsetError:
            preset = str(items[0])
    if preset:
        return load_preset(preset), Path(preset).stem
    return items, ""


def resolve_class(value: str | int) -> int:
    """A COCO class given by name (case-insensitive, ``traffic_light`` works too) or 0-79 id -> its 0-79 id."""
    if isinstance(value, bool):
        raise CocoSubsetError(f"class {value!r} is neither a COCO class name nor a 0-79 id")
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        idx = int(text)
        if not 0 <= idx < len(COCO80_NAMES):
            raise CocoSubsetError(f"class id {idx} is out of range; COCO class ids are 0-79 (0 person, 2 car, ...)")
        return idx
    if class_key(text) in _BY_NAME:
        return _BY_NAME[class_key(text)]
    close = difflib.get_close_matches(class_key(text), list(_BY_NAME), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise CocoSubsetError(
        f"unknown COCO class {text!r}; {hint}classes are COCO's 80 names (e.g. 'car', 'traffic light') "
        "or their 0-79 ids."
    )


def resolve_classes(classes: Iterable[str | int]) -> list[int]:
    """Resolve names/ids to 0-79 ids, keeping the given order and dropping repeats."""
    ids = list(dict.fromkeys(resolve_class(c) for c in classes))
    if not ids:
        raise CocoSubsetError(
            "no class given; pass COCO class names or 0-79 ids, e.g. --classes car,bus, or a preset "
            f"({', '.join(list_presets())})"
        )
    return ids
