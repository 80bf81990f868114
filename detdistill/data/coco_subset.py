"""Turn a COCO 2017 download into a YOLO-format dataset holding only some of its 80 classes.

Input is the standard layout (``annotations/instances_{train,val}2017.json`` plus ``train2017/`` and
``val2017/``, or ``images/train2017/`` ...). Output is ``out/images/{train,val}``, ``out/labels/{train,val}``
and ``out/data.yaml`` with the subset's ``names`` and a ``coco_classes:`` block that maps each subset class
to its COCO class (contiguous 0-79 ids, the order of ultralytics' ``coco.yaml``), so a COCO-trained teacher
distils into the subset without a ``--class-map``.

Rules: crowd annotations (``iscrowd: 1``) are skipped, boxes are clipped to the image and dropped when
empty; an image whose only annotations of the chosen classes are crowd or empty boxes is left out
(neither a positive nor a background image). Train and val come from their own COCO split only.
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .files import link_or_copy

log = logging.getLogger(__name__)

PRESETS_DIR = Path(__file__).parent / "presets"
MARKER_KEY = "coco_subset"  # data.yaml block recording how the dataset was made (and that we may rewrite it)

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

LAYOUT_HINT = ("expected the COCO 2017 layout: annotations/, train2017/, val2017/ "
               "(or images/train2017/, images/val2017/)")


class CocoSubsetError(ValueError):
    """Bad input to the COCO subset converter; the message names the problem and the fix."""


@dataclass
class _Image:
    """One output image: its source file and YOLO label lines (empty for a background image)."""

    src: Path
    lines: list[str]


@dataclass
class _SplitPlan:
    """What one split will hold, decided before anything is written."""

    name: str  # output split: train / val
    source: str  # COCO split: train2017 / val2017
    positives: list[_Image] = field(default_factory=list)
    negatives: list[_Image] = field(default_factory=list)
    missing: int = 0
    crowd: int = 0
    empty_boxes: int = 0

    def stats(self) -> dict[str, int | str]:
        return {
            "from": self.source,
            "images": len(self.positives) + len(self.negatives),
            "negatives": len(self.negatives),
            "boxes": sum(len(im.lines) for im in self.positives),
            "missing_skipped": self.missing,
            "crowd_skipped": self.crowd,
            "empty_boxes_skipped": self.empty_boxes,
        }


# ----------------------------------------------------------------------------------------------- classes
def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


_BY_NAME = {_norm(n): i for i, n in enumerate(COCO80_NAMES)}


def list_presets() -> list[str]:
    """Names of the built-in class presets (``detdistill/data/presets/*.yaml``)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(preset: str | Path) -> list[str]:
    """Class list of a built-in preset (e.g. ``road``) or of a preset YAML file with a ``classes:`` list."""
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise CocoSubsetError(f"no class preset {str(preset)!r}; built-in presets: {', '.join(list_presets())}")
    classes = (yaml.safe_load(path.read_text()) or {}).get("classes")
    if not isinstance(classes, list) or not classes:
        raise CocoSubsetError(f"preset {path} needs a non-empty `classes:` list of COCO class names")
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
    if _norm(text) in _BY_NAME:
        return _BY_NAME[_norm(text)]
    close = difflib.get_close_matches(_norm(text), list(_BY_NAME), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise CocoSubsetError(
        f"unknown COCO class {text!r}; {hint}Classes are COCO's 80 names (e.g. 'car', 'traffic light') "
        "or their 0-79 ids."
    )


def resolve_classes(classes: Iterable[str | int]) -> list[int]:
    """Resolve names/ids to 0-79 ids, keeping the given order and dropping repeats."""
    ids = list(dict.fromkeys(resolve_class(c) for c in classes))
    if not ids:
        raise CocoSubsetError(
            "no class given; pass COCO class names or 0-79 ids, e.g. ['car', 'bus'], or a preset "
            f"({', '.join(list_presets())})"
        )
    return ids


# ------------------------------------------------------------------------------------------------ layout
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


def _load_instances(path: Path) -> dict:
    try:
        coco = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise CocoSubsetError(f"{path} is not valid JSON ({e}); re-download or re-extract the annotations") from e
    missing = [k for k in ("images", "annotations", "categories") if k not in coco]
    if missing:
        raise CocoSubsetError(f"{path} is not a COCO instances file: it lacks {', '.join(missing)}")
    return coco


def _category_map(categories: list[dict], subset: Sequence[int], path: Path) -> dict[int, int]:
    """COCO json category id -> subset class index; checks the json uses the standard COCO ids."""
    names = {c["id"]: str(c.get("name", "")) for c in categories}
    out = {}
    for k, c in enumerate(subset):
        cat_id, name = COCO80_CATEGORY_IDS[c], COCO80_NAMES[c]
        if cat_id not in names:
            raise CocoSubsetError(f"{path} has no category {cat_id} ({name!r}); it is not a COCO 2017 instances file")
        if _norm(names[cat_id]) != name:
            raise CocoSubsetError(
                f"{path}: category {cat_id} is {names[cat_id]!r}, expected {name!r}; the converter needs the "
                "standard COCO 2017 category ids"
            )
        out[cat_id] = k
    return out


# ------------------------------------------------------------------------------------------------ labels
def yolo_line(cls: int, bbox: Sequence[float], width: float, height: float) -> str | None:
    """YOLO label line for a COCO ``[x, y, w, h]`` pixel box clipped to the image; None if nothing is left."""
    x, y, w, h = map(float, bbox)
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return None
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{cls} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def _collect_labels(coco: dict, cat_to_cls: dict[int, int], plan: _SplitPlan) -> tuple[dict[int, list[str]], set[int]]:
    """Label lines per image id, and the ids of every image with any annotation of the chosen classes."""
    images = {im["id"]: im for im in coco["images"]}
    lines: dict[int, list[str]] = {}
    touched: set[int] = set()
    for ann in coco["annotations"]:
        cls, im = cat_to_cls.get(ann.get("category_id")), images.get(ann.get("image_id"))
        if cls is None or im is None:
            continue
        touched.add(im["id"])
        if ann.get("iscrowd", 0):
            plan.crowd += 1
            continue
        line = yolo_line(cls, ann["bbox"], im["width"], im["height"])
        if line is None:
            plan.empty_boxes += 1
            continue
        lines.setdefault(im["id"], []).append(line)
    return lines, touched


# ------------------------------------------------------------------------------------------------ budget
def _wanted_negatives(n_pos: int, include_empty: float | int) -> int:
    return round(n_pos * include_empty) if isinstance(include_empty, float) else include_empty


def split_budget(n_pos: int, n_neg: int, max_images: int | None, include_empty: float | int) -> tuple[int, int]:
    """How many positive and background images to keep; ``max_images`` caps both together, keeping their ratio."""
    pos = n_pos if max_images is None else min(n_pos, max_images)
    neg = min(n_neg, _wanted_negatives(pos, include_empty))
    if max_images is not None and pos + neg > max_images:
        scaled = max(min(pos, 1), round(max_images * pos / (pos + neg)))
        pos, neg = scaled, min(neg, max_images - scaled)
    return pos, neg


def _pick(ids: list[int], k: int, rng: random.Random) -> list[int]:
    return sorted(rng.sample(ids, k))


# ------------------------------------------------------------------------------------------------- plan
def _plan_split(
    ann: Path, image_dir: Path, subset: Sequence[int], max_images: int | None, include_empty: float | int, seed: int
) -> _SplitPlan:
    """Read one split's annotations and choose its images (deterministic for a seed)."""
    source = image_dir.name
    plan = _SplitPlan(split_name(source), source)
    coco = _load_instances(ann)
    lines, touched = _collect_labels(coco, _category_map(coco["categories"], subset, ann), plan)
    files = {im["id"]: image_dir / im["file_name"] for im in coco["images"]}
    del coco

    pos_ids = sorted(lines)
    neg_ids = sorted(set(files) - touched)
    present_pos = [i for i in pos_ids if files[i].is_file()]
    present_neg = [i for i in neg_ids if files[i].is_file()]
    plan.missing = len(pos_ids) - len(present_pos) + len(neg_ids) - len(present_neg)
    _check_found(plan, ann, image_dir, subset, pos_ids, present_pos, files)
    if plan.missing:
        example = next(files[i] for i in pos_ids + neg_ids if not files[i].is_file())
        log.warning(f"{source}: {plan.missing} image(s) listed in {ann.name} are not on disk (e.g. {example}); skipped")

    n_pos, n_neg = split_budget(len(present_pos), len(present_neg), max_images, include_empty)
    rng = random.Random(f"{seed}:{source}")
    plan.positives = [_Image(files[i], lines[i]) for i in _pick(present_pos, n_pos, rng)]
    plan.negatives = [_Image(files[i], []) for i in _pick(present_neg, n_neg, rng)]
    return plan


def _check_found(
    plan: _SplitPlan, ann: Path, image_dir: Path, subset: Sequence[int], pos_ids: list[int], present_pos: list[int],
    files: dict[int, Path],
) -> None:
    """Raise if the split has no image with a chosen class, or none of them is on disk."""
    names = [COCO80_NAMES[c] for c in subset]
    if not pos_ids:
        raise CocoSubsetError(f"no image in {ann.name} has a (non-crowd) box of {names}")
    if not present_pos:
        raise CocoSubsetError(
            f"none of the {len(pos_ids)} {plan.source} images with {names} is in {image_dir} "
            f"(e.g. {files[pos_ids[0]].name} is missing); unzip {plan.source}.zip there"
        )


# ------------------------------------------------------------------------------------------------ write
def _prepare_out(out: Path) -> None:
    """Create ``out``, or clear the images/labels of a dataset this converter wrote there before."""
    data = out / "data.yaml"
    if out.exists() and not out.is_dir():
        raise CocoSubsetError(f"output {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = data.is_file() and MARKER_KEY in (yaml.safe_load(data.read_text()) or {})
        if not ours:
            raise CocoSubsetError(
                f"output folder {out} is not empty and was not written by `detdistill data coco-subset`; "
                "pass an empty or new folder"
            )
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
        data.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_split(out: Path, plan: _SplitPlan, progress) -> None:
    images, labels = out / "images" / plan.name, out / "labels" / plan.name
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    todo = plan.positives + plan.negatives
    task = progress.add_task(f"{plan.source} -> {plan.name}", total=len(todo))
    for im in todo:
        link_or_copy(im.src, images / im.src.name)
        (labels / f"{im.src.stem}.txt").write_text("".join(f"{line}\n" for line in im.lines))
        progress.advance(task)


def _dump(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _data_yaml(subset: Sequence[int], plans: Sequence[_SplitPlan], provenance: dict) -> str:
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


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), disable=not enabled)


def _reading(ann: Path, enabled: bool):
    """A spinner while a (large: 450 MB for train2017) annotation file is read, when progress is on."""
    from contextlib import nullcontext

    from rich.console import Console

    if not enabled:
        return nullcontext()
    return Console(stderr=True).status(f"reading {ann.name} ({ann.stat().st_size / 1e6:.0f} MB) ...")


def _check_options(max_images: int | None, include_empty: float | int, splits: Sequence[str]) -> None:
    if max_images is not None and max_images < 1:
        raise CocoSubsetError(f"max_images must be at least 1, got {max_images}")
    if isinstance(include_empty, bool) or not isinstance(include_empty, (int, float)) or include_empty < 0:
        raise CocoSubsetError(
            f"include_empty must be a fraction of the kept images (float, e.g. 0.1) or a count (int) >= 0, "
            f"got {include_empty!r}"
        )
    names = [split_name(s) for s in splits]
    if not splits or len(set(names)) != len(names):
        raise CocoSubsetError(f"splits must name distinct COCO splits such as train2017, val2017; got {list(splits)}")


# -------------------------------------------------------------------------------------------------- api
def make_coco_subset(
    coco_dir: Path,
    out: Path,
    classes: Sequence[str | int],
    max_images: int | None = None,
    splits: Sequence[str] = ("train2017", "val2017"),
    include_empty: float | int = 0.1,
    progress: bool = True,
    seed: int = 0,
) -> Path:
    """Write a YOLO dataset of the chosen COCO classes to ``out`` and return its ``data.yaml``.

    Args:
        coco_dir: COCO 2017 download (``annotations/``, ``train2017/``, ``val2017/``).
        out: output folder; new, empty, or one this function wrote before (then replaced).
        classes: COCO class names (case-insensitive) or 0-79 ids; their order sets the subset's class ids.
        max_images: cap on the images per split (background images included), chosen at random with ``seed``.
        splits: COCO splits to convert; ``train2017`` -> ``train``, ``val2017`` -> ``val``.
        include_empty: background images (none of the classes) to keep per split: a float is a fraction of
            the kept images with objects (0.1 = 10 %), an int a count; 0 keeps none.
        progress: show a progress bar on stderr.
        seed: seed of the random image selection.

    Raises:
        CocoSubsetError: wrong layout, unknown or no class, no image found, non-empty foreign ``out``.
    """
    coco_dir, out = Path(coco_dir).expanduser().resolve(), Path(out).expanduser()
    subset = resolve_classes(classes)
    _check_options(max_images, include_empty, splits)
    if not coco_dir.is_dir():
        raise CocoSubsetError(f"COCO folder {coco_dir} does not exist; {LAYOUT_HINT}")
    layout = [find_split(coco_dir, s) for s in splits]
    plans = []
    for ann, images in layout:
        with _reading(ann, progress):
            plans.append(_plan_split(ann, images, subset, max_images, include_empty, seed))

    _prepare_out(out)
    with _progress(progress) as bar:
        for plan in plans:
            _write_split(out, plan, bar)
    provenance = {"coco": str(coco_dir), "seed": seed, "max_images": max_images, "include_empty": include_empty,
                  "splits": {p.name: p.stats() for p in plans}}
    data = out / "data.yaml"
    data.write_text(_data_yaml(subset, plans, provenance))
    return data
