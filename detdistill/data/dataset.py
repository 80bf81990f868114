"""A YOLO-format dataset YAML: splits, image files and their labels (torch-free)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..file_checks import require_present
from .images import images_in

SPLITS = ("train", "val", "test")  # the split keys of a YOLO data YAML
CLASS_MAP_BLOCKS = ("teacher_classes", "coco_classes")  # the teacher class maps a data YAML may hold (read by data.class_map)
LABEL_FORMAT = ("each line is 'class x_center y_center width height': a class id, then the box's centre and size "
                "normalised to 0-1 by the image's width and height, e.g. '0 0.5 0.5 0.2 0.3'")


class DatasetError(ValueError):
    """A data YAML, image list or label file that cannot be read as one; the message names the file and the fix."""


class SplitError(KeyError):
    """A split the data YAML does not have (a KeyError whose message prints without quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def read_text(path: Path, what: str) -> str:
    """The text of ``path``, or a :class:`DatasetError` saying it is not a text ``what`` (e.g. a binary file)."""
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not part of the text
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not a text {what} (byte 0x{e.object[e.start]:02x} at position {e.start} is "
                           f"not {e.encoding} text): pass the {what} itself, not an image or other binary "
                           "file") from None


def read_data_yaml(path: str | Path) -> dict:
    """The keys of a data YAML as written (paths not resolved; ``{}`` for an empty file or one that is no mapping).

    The one reader of data YAMLs: a missing file is ``FileNotFoundError``, a binary one :class:`DatasetError`, and
    YAML that does not parse ``yaml.YAMLError`` (the CLI names its line)."""
    path = Path(path)
    require_present(path, "dataset YAML", "Pass a YOLO data YAML (names: and the train/val image paths).")
    cfg = yaml.safe_load(read_text(path, "data YAML"))
    return cfg if isinstance(cfg, dict) else {}


def read_image_list(image_list: Path, root: Path | None = None) -> list[Path]:
    """The images a ``.txt`` list names, one a line. A relative entry is read from the list's folder (as
    ultralytics reads ``./`` entries); in a data YAML's split, one found only under the dataset ``root`` is read
    from there."""
    lines = [x.strip() for x in read_text(image_list, "image list").splitlines() if x.strip()]
    files = []
    for line in lines:
        entry = Path(line)
        if entry.is_absolute():
            files.append(entry)
            continue
        here = image_list.parent / entry
        files.append(root / entry if root is not None and not here.exists() and (root / entry).exists() else here)
    return files


@dataclass
class YoloDataset:
    """Dataset YAML resolved to absolute paths."""

    root: Path
    splits: dict[str, list[Path]]
    names: dict[int, str]
    source: Path | None = None  # the data YAML
    class_blocks: dict = field(default_factory=dict)  # its teacher_classes / coco_classes blocks (data.class_map)

    def images(self, split: str) -> list[Path]:
        """All image files of ``split`` (``train``, ``val`` or ``test``)."""
        yaml_name = self.source or "the data YAML"
        if split not in self.splits:
            others = (f"it has {', '.join(self.splits)}): choose one of those, or add" if self.splits
                      else "it names no split): add")
            raise SplitError(f"{yaml_name} has no '{split}' split ({others} a '{split}:' entry to the YAML")
        files: list[Path] = []
        for entry in self.splits[split]:
            if entry.is_dir():
                files += images_in(entry)
            elif entry.suffix == ".txt":
                files += self.listed_images(entry)
            elif entry.exists():
                files.append(entry)
            else:
                raise FileNotFoundError(f"split '{split}' path {entry} does not exist")
        if not files:
            where = ", ".join(str(e) for e in self.splits[split])
            raise FileNotFoundError(f"no images found for split '{split}' in {where}: put the images there, or fix "
                                    f"the '{split}:' path in {yaml_name}")
        return files

    def listed_images(self, image_list: Path) -> list[Path]:
        """The images a split's ``.txt`` list names (:func:`read_image_list`, the dataset root as fallback)."""
        return read_image_list(image_list, self.root)


def label_path(image: Path) -> Path:
    """``.../images/x.jpg`` -> ``.../labels/x.txt`` (YOLO convention)."""
    parts = list(image.parts)
    idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def require_labels(files: Sequence[Path], what: str) -> None:
    """Raise when not one of ``files`` has a label file: its labels folder is missing, and every image would count as
    a background image (mAP 0). An image whose label file is empty is a background image, and fine."""
    if not files or any(label_path(f).is_file() for f in files):
        return
    folders = sorted({str(label_path(f).parent) for f in files})
    where = folders[0] + (f" (and {len(folders) - 1} more folders)" if len(folders) > 1 else "")
    raise FileNotFoundError(f"no label file for any of the {len(files)} images of {what}: looked for them in "
                            f"{where} (.../images/x.jpg is labelled by .../labels/x.txt); add that labels folder, "
                            "or point the data YAML at a labelled split")


EPS = 1e-6  # rounding slack on the 0-1 range of label coordinates


def _label_rows(f: Path) -> list[list[float]]:
    """``[class, x_center, y_center, width, height]`` of each line of label file ``f``: a box line (the first 5
    values of a longer one), or a polygon line (class x1 y1 x2 y2 x3 y3 ..., a segmentation label) as the box
    around it, as ultralytics reads it. A bad line raises."""
    rows = []
    for n, line in enumerate(read_text(f, "YOLO label file").splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        polygon = len(cols) > 6 and len(cols) % 2 == 1
        bad = [v for v in (cols if polygon else cols[:5]) if not _is_number(v)]
        row = None
        if polygon and not bad:
            xs, ys = [float(v) for v in cols[1::2]], [float(v) for v in cols[2::2]]
            row = [float(cols[0]), (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs),
                   max(ys) - min(ys)]
            out_of_range = next((v for v in xs + ys if not -EPS <= v <= 1 + EPS), None)
        elif len(cols) >= 5 and not bad:
            row = [float(v) for v in cols[:5]]
            out_of_range = next((v for v in row[1:] if not -EPS <= v <= 1 + EPS), None)
        if row is not None and row[0] >= 0 and row[0].is_integer() and out_of_range is None:
            rows.append(row)
            continue
        if row is None:
            why = f"{len(cols)} value{'s' * (len(cols) != 1)}, not 5" if len(cols) < 5 else f"{bad[0]!r} is not a number"
        elif not (row[0] >= 0 and row[0].is_integer()):
            why = f"class {cols[0]} is not a class id 0, 1, 2, ..."
        else:
            why = f"{out_of_range:g} is outside 0-1: coordinates are fractions of the image's width and height"
        raise DatasetError(f"{f} line {n} ({line.strip()[:60]!r}: {why}) is not a YOLO label line: {LABEL_FORMAT}; "
                           "fix or delete that line")
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_labels(image: Path, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of one image: class ids ``(M,)`` and xyxy pixel boxes ``(M, 4)``."""
    f = label_path(image)
    if not f.is_file():
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    rows = _label_rows(f)
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    a = np.array(rows, dtype=np.float32)
    h, w = shape
    cx, cy, bw, bh = a[:, 1] * w, a[:, 2] * h, a[:, 3] * w, a[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    return a[:, 0].astype(np.int64), boxes


def label_problem(data: str | Path, splits: Sequence[str] = ("train", "val")) -> str | None:
    """The first label problem in ``splits`` of the data YAML ``data`` (a class id the YAML does not name, or a line
    that is not a YOLO label line), naming the file and the fix; None when every label file reads. For a training
    run that ultralytics found no usable image in (it drops such images with a warning per file)."""
    dataset = load_dataset(data)
    for split in (s for s in splits if s in dataset.splits):
        for image in dataset.images(split):
            f = label_path(image)
            if not f.is_file():
                continue
            try:
                ids = {int(row[0]) for row in _label_rows(f)}
            except DatasetError as e:
                return str(e)
            if problem := unnamed_class_ids(f, ids, dataset.names, dataset.source):
                return problem
    return None


def unnamed_class_ids(label_file: Path, ids: Iterable[int], names: dict[int, str], data: str | Path) -> str | None:
    """What is wrong when ``label_file`` holds class ``ids`` that the data YAML ``data`` (naming ``names``) does not
    name, with the fix; None when it names them all."""
    unknown = sorted(set(ids) - names.keys())
    if not unknown:
        return None
    return (f"{label_file} has class ids {unknown} that {data} does not name (it names {len(names)} classes): fix "
            "the labels or the YAML's names")


def load_dataset(path: str | Path) -> YoloDataset:
    """Parse a YOLO dataset YAML; relative paths resolve against ``path:`` or the YAML's folder."""
    if not str(path).strip():
        raise DatasetError("the data YAML path is empty: pass a YOLO data YAML")
    path = Path(path).resolve()
    cfg = read_data_yaml(path)
    if "names" not in cfg:
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
    blocks = {key: cfg[key] for key in CLASS_MAP_BLOCKS if key in cfg}
    return YoloDataset(root=root, splits=splits, names=names, source=path, class_blocks=blocks)
