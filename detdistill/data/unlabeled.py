"""Unlabeled images as extra distillation data: the teacher is their only supervisor.

The teacher's confident detections, mapped onto the student's classes, become the images' labels
(pseudo-labels, as in Xie et al., "Self-training with Noisy Student", CVPR 2020), and the images join
the training split, where the KD losses read the teacher's dense outputs on them as on any image.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..atomic import write_text
from ..hashing import file_sha256, settings_key, stat_key
from ..models import class_names
from .class_map import resolve_class_map, teacher_to_student
from .files import link_or_copy
from .image_lists import list_images
from .images import usable_images


PSEUDO_CONF = 0.4  # the teacher's confidence from which its detections become labels, unless set


def _fingerprint(teacher: Path, images: list[Path], conf: float, imgsz: int, mapping: dict[int, int]) -> str:
    """What the labels depend on: the teacher's contents, the images' paths, sizes and modification times (a folder
    refilled under the same names is labelled again; thousands of frames are not read on every run), the settings
    and the class mapping."""
    return settings_key({"teacher": file_sha256(teacher), "images": stat_key(images), "conf": conf,
                         "imgsz": imgsz, "mapping": sorted(mapping.items())})


def _stamp(path: Path) -> dict:
    """The last labelling's record, or nothing when there is none or it cannot be read (it is then done again)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def pseudo_label(
    teacher: str | Path,
    images: str | Path,
    out: Path,
    sources: Sequence[Sequence[int]],
    teacher_nc: int,
    conf: float = PSEUDO_CONF,
    imgsz: int = 640,
    device: str | None = None,
) -> tuple[Path, int, int]:
    """Label every image under ``images`` with the teacher's detections; return ``(images dir, images, boxes)``.

    Writes ``out/images`` (links to the originals) and ``out/labels`` in YOLO format; a rerun with the
    same teacher, images and settings reuses them.
    """
    from ultralytics import YOLO  # lazy: ultralytics (data/ stays torch-free)
    from ultralytics.utils import LOGGER, TQDM

    teacher, files = Path(teacher), list_images(images)
    mapping = teacher_to_student(sources, teacher_nc)
    if not mapping:
        raise ValueError("no teacher class maps onto exactly one student class: the teacher cannot label these images")
    stamp = out / "pseudo_labels.json"
    key = _fingerprint(teacher, files, conf, imgsz, mapping)
    info = _stamp(stamp)
    if info.get("key") == key:
        return out / "images", info["images"], info["boxes"]
    files, skipped = usable_images(files, "unlabeled images")  # read once, when they are labelled
    if skipped:
        LOGGER.warning(f"detdistill: warning: {skipped}")
    img_dir, lbl_dir = out / "images", out / "labels"
    shutil.rmtree(out, ignore_errors=True)
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    model, n_boxes = YOLO(str(teacher)), 0
    for i, path in enumerate(TQDM(files, desc="pseudo-labelling with the teacher")):
        result = model.predict(str(path), conf=conf, imgsz=imgsz, device=device, verbose=False)[0]
        cls = result.boxes.cls.int().tolist()
        rows = [f"{mapping[c]} {x:.6f} {y:.6f} {w:.6f} {h:.6f}"
                for c, (x, y, w, h) in zip(cls, result.boxes.xywhn.tolist()) if c in mapping]
        name = f"{i:06d}_{path.stem}"  # unique even when subfolders repeat file names
        link_or_copy(path, img_dir / f"{name}{path.suffix.lower()}")
        # plain writes: the stamp, written last, vouches for the whole set
        (lbl_dir / f"{name}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
        n_boxes += len(rows)
    write_text(stamp, json.dumps({"key": key, "images": len(files), "boxes": n_boxes, "conf": conf}))
    return img_dir, len(files), n_boxes


def data_with_extra_train(data: dict, extra_train: Path, out_yaml: Path) -> Path:
    """Write a dataset YAML equal to ``data`` (a checked ultralytics dataset dict) with ``extra_train`` added
    to its training split. The dataset's paths are absolute; ``extra_train``, when it lies in the YAML's
    folder, is relative to it (ultralytics resolves it there), so a work folder holding both can move."""
    keep = {k: v for k, v in data.items() if k in {"names", "nc", "channels", "coco_classes", "teacher_classes"}}
    train = data["train"] if isinstance(data["train"], list) else [data["train"]]
    extra, home = extra_train.resolve(), out_yaml.parent.resolve()
    keep["train"] = [str(Path(p).resolve()) for p in train] + [
        extra.relative_to(home).as_posix() if extra.is_relative_to(home) else str(extra)]
    keep["val"] = [str(Path(p).resolve()) for p in data["val"]] if isinstance(data["val"], list) else str(Path(data["val"]).resolve())
    keep["names"] = dict(keep["names"]) if not isinstance(keep["names"], dict) else keep["names"]
    out_yaml.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_yaml, yaml.safe_dump(keep, sort_keys=False))
    return out_yaml


def add_unlabeled(
    data: str | Path,
    teacher: str | Path,
    images: str | Path,
    workdir: Path,
    class_map: dict | None = None,
    conf: float = PSEUDO_CONF,
    imgsz: int = 640,
    device: str | None = None,
) -> Path:
    """Pseudo-label ``images`` with ``teacher`` and return a dataset YAML whose train split includes them."""
    from ultralytics.data.utils import check_det_dataset  # lazy: torch, ultralytics (as in pseudo_label)

    from ..distill.teacher import load_teacher, teacher_path

    teacher = teacher_path(teacher)  # a registry name becomes its local file
    dataset = check_det_dataset(str(data))
    t_names = class_names(load_teacher(teacher, fuse=False))
    cm = resolve_class_map(t_names, dataset, class_map)
    img_dir, n, boxes = pseudo_label(teacher, images, workdir / "pseudo", cm.sources, len(t_names), conf, imgsz, device)
    from ultralytics.utils import LOGGER  # lazy: ultralytics (as above)

    LOGGER.info(f"detdistill: {n} unlabeled images join the training split with {boxes} teacher boxes (conf >= {conf})")
    return data_with_extra_train(dataset, img_dir, workdir / "data-with-unlabeled.yaml")
