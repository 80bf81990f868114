"""Reading a COCO 2017 download: where each split's annotations and images are, its instances json, and its
boxes as YOLO label lines (crowd annotations skipped, boxes clipped to the image)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..names import class_key
from .coco_classes import COCO80_CATEGORY_IDS, COCO80_NAMES, CocoSubsetError

LAYOUT_HINT = ("expected the COCO 2017 layout: annotations/, train2017/, val2017/ "
               "(or images/train2017/, images/val2017/)")


@dataclass
class SplitLabels:
    """The YOLO label lines of one split's images with a chosen class, and what was skipped on the way."""

    lines: dict[int, list[str]] = field(default_factory=dict)  # image id -> label lines
    touched: set[int] = field(default_factory=set)  # every image with any annotation of the chosen classes
    crowd: int = 0
    empty_boxes: int = 0  # boxes with nothing left inside their image's width and height
    unknown_images: list = field(default_factory=list)  # image ids of chosen-class annotations not in "images"

    def why_none(self) -> str:
        """What became of the chosen classes' annotations when no image got a box (empty when there were none)."""
        parts = []
        if self.unknown_images:
            parts.append(f"{len(self.unknown_images)} annotation(s) refer to image ids that 'images' does not list "
                         f"(e.g. {self.unknown_images[0]!r})")
        if self.empty_boxes:
            parts.append(f"{self.empty_boxes} box(es) lie outside their image's width and height")
        if self.crowd:
            parts.append(f"{self.crowd} are crowd boxes")
        return "; ".join(parts)


def split_name(source: str) -> str:
    """Output split of a COCO split folder: ``train2017`` -> ``train``, ``val2017`` -> ``val``."""
    m = re.match(r"(train|val|test)", source)
    return m.group(1) if m else source


def find_split(coco_dir: Path, source: str) -> tuple[Path, Path]:
    """The annotation json and image folder of one COCO split, or a CocoSubsetError naming the layout."""
    ann = coco_dir / "annotations" / f"instances_{source}.json"
    if not ann.is_file():
        raise CocoSubsetError(f"no annotations/instances_{source}.json under {coco_dir}; {LAYOUT_HINT}")
    for images in (coco_dir / source, coco_dir / "images" / source):
        if images.is_dir():
            return ann, images
    raise CocoSubsetError(f"no {source}/ image folder (nor images/{source}/) under {coco_dir}; {LAYOUT_HINT}")


def load_instances(path: Path) -> dict:
    """The parsed instances json, checked to have COCO's top-level keys and well-formed images and categories."""
    try:
        coco = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise CocoSubsetError(f"{path} is not valid JSON ({e}); re-download or re-extract the annotations") from e
    if not isinstance(coco, dict):
        raise CocoSubsetError(f"{path} is not a COCO instances file: it holds a JSON {type(coco).__name__}, not an "
                              "object with images, annotations and categories")
    missing = [k for k in ("images", "annotations", "categories") if k not in coco]
    if missing:
        raise CocoSubsetError(f"{path} is not a COCO instances file: it lacks {', '.join(missing)}")
    malformed = [k for k in ("images", "annotations", "categories")
                 if not isinstance(coco[k], list) or not all(isinstance(item, dict) for item in coco[k])]
    if malformed:
        raise CocoSubsetError(f"{path} is not a COCO instances file: its {', '.join(malformed)} should be a list of "
                              "objects; re-download or re-extract the annotations")
    _check_images(coco["images"], path)
    _check_categories(coco["categories"], path)
    return coco


def _bad_item(path: Path, item: str, problem: str) -> CocoSubsetError:
    """The error for one malformed entry of an instances file: the file, the entry, what is wrong and the fix."""
    return CocoSubsetError(f"{path}: {item} {problem}; fix that entry or re-download the annotations")


def _has(item: dict, key: str) -> str:
    """How an entry's ``key`` reads in an error: ``has no 'bbox'`` or ``has bbox [1, 2, 3]`` (as JSON)."""
    return f"has {key} {json.dumps(item[key])[:80]}" if key in item else f"has no '{key}'"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_images(images: list[dict], path: Path) -> None:
    """Every image needs a unique integer id, a file_name and a positive width and height."""
    seen: set[int] = set()
    for i, im in enumerate(images):
        if not _is_id(im.get("id")):
            raise _bad_item(path, f"images[{i}]", f"{_has(im, 'id')}; it needs an integer 'id'")
        item = f"image {im['id']} (images[{i}])"
        if im["id"] in seen:
            raise _bad_item(path, item, "repeats an image id of an earlier entry")
        seen.add(im["id"])
        name = im.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise _bad_item(path, item, f"{_has(im, 'file_name')}; it needs the image file's name, e.g. 'x.jpg'")
        for key in ("width", "height"):
            if not (_is_number(im.get(key)) and im[key] > 0):
                raise _bad_item(path, item, f"{_has(im, key)}; it needs the image's {key} in pixels (> 0)")


def _check_categories(categories: list[dict], path: Path) -> None:
    """Every category needs an integer id."""
    for i, cat in enumerate(categories):
        if not _is_id(cat.get("id")):
            raise _bad_item(path, f"categories[{i}] ({cat.get('name', '')!r})",
                            f"{_has(cat, 'id')}; it needs an integer 'id'")


def category_map(categories: list[dict], subset: Sequence[int], path: Path) -> dict[int, int]:
    """COCO json category id -> subset class index; checks the json uses the standard COCO ids."""
    names = {c["id"]: str(c.get("name", "")) for c in categories}
    out = {}
    for k, c in enumerate(subset):
        cat_id, name = COCO80_CATEGORY_IDS[c], COCO80_NAMES[c]
        if cat_id not in names:
            raise CocoSubsetError(f"{path} has no category {cat_id} ({name!r}); it is not a COCO 2017 instances file")
        if class_key(names[cat_id]) != name:
            raise CocoSubsetError(
                f"{path}: category {cat_id} is {names[cat_id]!r}, expected {name!r}; the converter needs the "
                "standard COCO 2017 category ids"
            )
        out[cat_id] = k
    return out


def yolo_line(cls: int, bbox: Sequence[float], width: float, height: float) -> str | None:
    """YOLO label line for a COCO ``[x, y, w, h]`` pixel box clipped to the image; None if nothing is left."""
    x, y, w, h = map(float, bbox)
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return None
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{cls} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def collect_labels(coco: dict, cat_to_cls: dict[int, int], path: Path) -> SplitLabels:
    """Label lines per image id of the chosen classes (``cat_to_cls``), with the crowd and empty boxes counted.
    ``coco`` is checked by :func:`load_instances`; the boxes used are checked here (``path`` names the file)."""
    images = {im["id"]: im for im in coco["images"]}
    out = SplitLabels()
    for k, ann in enumerate(coco["annotations"]):
        cat, image_id = ann.get("category_id"), ann.get("image_id")  # not an id (e.g. a list): matches nothing
        cls, im = cat_to_cls.get(cat) if _is_id(cat) else None, images.get(image_id) if _is_id(image_id) else None
        if cls is not None and im is None:
            out.unknown_images.append(image_id)
        if cls is None or im is None:
            continue
        out.touched.add(im["id"])
        if ann.get("iscrowd", 0):
            out.crowd += 1
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise _bad_item(path, f"annotation {ann.get('id', '(no id)')} (annotations[{k}], of image {im['id']})",
                            f"{_has(ann, 'bbox')}; it needs [x, y, width, height], 4 numbers in pixels")
        line = yolo_line(cls, bbox, im["width"], im["height"])
        if line is None:
            out.empty_boxes += 1
            continue
        out.lines.setdefault(im["id"], []).append(line)
    return out
