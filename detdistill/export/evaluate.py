"""COCO mAP50-95, mAP50 and AP of small, medium and large objects of any artifact (.pt, .onnx, INT8 .onnx,
.engine) through the deployed runtime pipeline.

Predictions go through :class:`detdistill.runtime.Detector` (same letterbox, decode and NMS as on the
device) and are scored against the YOLO labels in original-image pixels by COCO's detection evaluation
(cocodataset.org/#detection-eval: IoU thresholds 0.50:0.05:0.95, the top 100 detections per image and
class, 101-point interpolated AP, classes with ground truth), computed by faster-coco-eval, see
:mod:`detdistill.export.coco_metrics`. torch is imported only for ``.pt`` inputs.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data import corruptions
from ..models import MAX_STRIDE
from ..names import class_key
from ..runtime import Detector
from ..runtime.detector import class_ids_of
from ..runtime.backends import describe_backend
from ..runtime.backends.onnxruntime import onnx_metadata
from ..runtime.metadata import ModelInfo
from ..file_checks import require_present
from ..data.dataset import label_path, load_dataset, read_labels, require_labels, unnamed_class_ids
from ..data.images import ImageError, decode_checked, read_bgr
from ..data.splits import photo_groups
from .qdq import is_qdq
from .coco_metrics import IOU_THRESHOLDS, ImageRecord, MatchTable, coco_metrics
from .torch_backend import TorchBackend

__all__ = ["INT8_MODES", "IOU_THRESHOLDS", "EvalResult", "ImageRecord", "UnmappedClassesWarning",
           "class_count_warning", "evaluate", "int8_kernels_for", "map_of", "open_detector", "rect_shapes"]


def map_of(records: list[ImageRecord], index: np.ndarray | None = None) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the images ``records[index]`` (all by default; repeats count again), accumulated from
    the stored matches as COCOeval would; 0 where they hold no labelled object. For many resamples of the same
    records build one :class:`~detdistill.export.coco_metrics.MatchTable` and call its ``map``."""
    weights = None if index is None else np.bincount(np.asarray(index, np.int64), minlength=len(records))
    return MatchTable(records).map(weights)


@dataclass
class EvalResult:
    """Detection accuracy on one split: COCO's AP metrics; ``ap_small`` etc. are None where no object has that size."""

    map50_95: float
    map50: float
    images: int
    instances: int
    per_class_ap: dict[int, float] = field(default_factory=dict)  # AP50-95 of each labelled class
    evaluator: str = ""  # what computed the predictions, e.g. "ONNX Runtime CPU INT8 kernels (avx2)"
    records: list[ImageRecord] | None = None  # per image, with keep_records=True (bootstrap intervals)
    map75: float = 0.0
    ap_small: float | None = None  # objects under 32x32 pixels of box area
    ap_medium: float | None = None  # 32x32 to 96x96
    ap_large: float | None = None  # over 96x96
    unlabelled: int = 0  # images without a label file, scored as background images (as ultralytics scores them)
    truncated: int = 0  # truncated JPEG/PNG files, scored as decoded, the missing part grey (as ultralytics does)

    def as_dict(self) -> dict:
        return {"mAP50-95": self.map50_95, "mAP50": self.map50, "mAP75": self.map75, "APs": self.ap_small,
                "APm": self.ap_medium, "APl": self.ap_large, "images": self.images, "instances": self.instances,
                "evaluator": self.evaluator}

    def summary(self) -> str:
        """One line: the metrics ("-" for a size without objects), images, instances and the evaluator."""
        size = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        return (f"mAP50-95 {self.map50_95:.4f}  mAP50 {self.map50:.4f}  APs {size(self.ap_small)}  "
                f"APm {size(self.ap_medium)}  APl {size(self.ap_large)}  ({self.images} images, "
                + (f"{self.unlabelled} of them without a label file, so background, " if self.unlabelled else "")
                + (f"{self.truncated} of them truncated, scored with the missing part grey, " if self.truncated else "")
                + f"{self.instances} instances; {self.evaluator})")


def rect_shapes(files: list[Path], imgsz: int, batch: int, stride: int) -> dict[Path, tuple[int, int]]:
    """Per-image input shapes of rectangular validation: images sorted by aspect ratio, batched, and each batch
    letterboxed to the smallest stride-multiple rectangle (plus half a stride) that holds all of them. These are
    the batch shapes ultralytics' validator gives a dataset with ``rect=True``, so that a ``.pt`` scores here as
    ``YOLO(pt).val()`` scores it; the shapes are computed from the image sizes, not taken from ultralytics, which
    the torch-free evaluator does not import."""
    hw = []
    for f in files:
        img = cv2.imread(str(f))
        if img is None:
            raise ValueError(f"could not read image {f}")
        hw.append(img.shape[:2])
    ar = np.array([h / w for h, w in hw])
    order = np.argsort(ar, kind="stable")
    out = {}
    for start in range(0, len(files), batch):
        idx = order[start:start + batch]
        lo, hi = ar[idx].min(), ar[idx].max()
        shape = [hi, 1.0] if hi < 1 else ([1.0, 1 / lo] if lo > 1 else [1.0, 1.0])
        h, w = (int(np.ceil(s * imgsz / stride + 0.5)) * stride for s in shape)
        for i in idx:
            out[files[i]] = (h, w)
    return out


def check_int8_choice(model: Path, int8: str) -> None:
    """Raise ValueError for ``--int8 kernels|simulate`` on a model that has no Q/DQ pair to run either way."""
    if int8 not in ("kernels", "simulate"):
        return
    if model.suffix.lower() != ".onnx" or not is_qdq(model):
        raise ValueError(f"int8={int8!r} (--int8 {int8}) chooses how an INT8 (Q/DQ) ONNX runs, and {model.name} is not "
                         "one: leave it at 'auto' (drop --int8)")


class OtherClassesWarning(UserWarning):
    """The model predicts other classes than the data names: its mAP means little without a class map."""


class UnmappedClassesWarning(UserWarning):
    """A class map leaves data classes that have boxes without a model class: each scores AP 0 in the mean."""


def unmapped_classes_warning(class_map: dict[int, int], data_names: dict[int, str],
                             label_ids: list[np.ndarray]) -> str | None:
    """Which data classes with boxes among ``label_ids`` no model class of ``class_map`` is scored as, or ``None``."""
    counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *label_ids]).astype(np.int64))
    left = [(data_names.get(c, str(c)), int(n)) for c, n in enumerate(counts) if n and c not in class_map.values()]
    if not left:
        return None
    listed = ", ".join(f"{name} ({n} boxes)" for name, n in left)
    each = "it scores" if len(left) == 1 else "each scores"
    return (f"class_map maps no model class to {listed}: with no detections, {each} AP 0 in the mean mAP; map a "
            "model class to each data class, or read the mapped classes in per_class_ap")


INT8_MODES = ("auto", "kernels", "simulate")


def int8_kernels_for(model: str | Path, int8: str = "auto") -> bool:
    """Whether an ONNX model runs on ONNX Runtime's integer kernels (else Q/DQ simulated in float).

    ``auto`` simulates the ``tensorrt`` target (what an int32-accumulating engine computes) and runs the
    ``cpu`` target on the integer kernels it was made for.
    """
    if int8 not in INT8_MODES:
        raise ValueError(f"int8 must be one of {', '.join(INT8_MODES)}, got {int8!r}")
    if int8 != "auto":
        return int8 == "kernels"
    return ModelInfo.from_mapping(onnx_metadata(model)).quantization.get("target") != "tensorrt"


def open_detector(model: str | Path, *, imgsz: int | None = None, backend: str = "auto", device: str = "cpu",
                  conf: float = 0.001, iou: float = 0.7, max_det: int = 300, int8: str = "auto") -> Detector:
    """A validation-mode Detector (low conf, multi-label NMS) for any artifact; ``.pt`` runs in PyTorch.

    ``int8`` (``auto``, ``kernels``, ``simulate``): how an INT8 Q/DQ ONNX runs, see :func:`int8_kernels_for`.
    """
    model = Path(model)
    require_present(model, "model", "Pass a .pt, .onnx or .engine.")
    check_int8_choice(model, int8)
    if imgsz is not None and imgsz < 1:
        raise ValueError(f"imgsz must be a positive multiple of {MAX_STRIDE} (e.g. 320, 640), got {imgsz}")
    # fit_frames: a model with in-graph preprocessing (export --frame) gets each image letterboxed to its frame size
    kwargs = {"conf": conf, "iou": iou, "max_det": max_det, "multi_label": True, "fit_frames": True}
    suffix = model.suffix.lower()  # MODEL.ONNX as the runtime and the demo take it
    if suffix == ".pt":
        return Detector(TorchBackend(model, imgsz, device=device), **kwargs)
    if suffix not in {".onnx", ".engine", ".plan"}:
        raise ValueError(f"{model}: expected a .pt, .onnx or .engine file")
    extra = {"device": device, "int8_kernels": int8_kernels_for(model, int8)} if suffix == ".onnx" else {}
    det = Detector(model, backend=backend, **kwargs, **extra)
    if imgsz and tuple(det.imgsz) != (imgsz, imgsz):
        raise ValueError(f"{model} takes imgsz {det.imgsz}, not {imgsz}: re-export it at {imgsz} or drop --imgsz")
    return det


def model_to_data_ids(class_map: dict, model_names: dict[int, str], data_names: dict[int, str],
                      data: str | Path) -> dict[int, int]:
    """``class_map`` ({model class: data class}, each an id, a digit string or a name matched as
    :func:`detdistill.names.class_key` matches names) as ids; a ``ValueError`` naming the entry, the
    direction and the classes to choose from for a class that neither side has. ``{}`` keeps no detection."""
    if not isinstance(class_map, dict):
        raise ValueError(f"class_map must be a dict {{model class: data class}}, got {class_map!r}")

    def resolve(value: object, names: dict[int, str], side: str) -> int:
        (i,) = class_ids_of([int(value) if isinstance(value, str) and value.strip().isdigit() else value], names)
        if i is not None and (i in names or not names and i >= 0):
            return i
        listed = ", ".join(f"{k}: {n}" for k, n in list(names.items())[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"class_map {{model class: data class}}: {side} has no class {value!r} ({side}'s classes: "
                         f"{listed}); keys are the model's classes, values the data's, by id or name")

    return {resolve(k, model_names, "the model"): resolve(v, data_names, str(data)) for k, v in class_map.items()}


def class_count_warning(det: Detector, data: str | Path) -> str | None:
    """Why scoring ``det`` on ``data`` may mean little: the model predicts more classes than the data names, and its
    first ones are not the data's (:func:`evaluate` refuses fewer), or as many under other names. ``None`` when the
    classes agree."""
    names = load_dataset(data).names
    n, m = len(det.names), len(names)
    differ = [i for i in range(m) if class_key(det.names.get(i, "")) != class_key(names.get(i, ""))]
    if n < m or not differ:
        return None

    def shown(ids: list[int] | range) -> str:
        pairs = ", ".join(f"{det.names.get(i, i)} as {names.get(i, i)}" for i in ids[:3])
        return pairs + (", ..." if len(ids) > 3 else "")

    if n == m:  # the same count: the ids are scored by position, so their names must agree too
        return (f"the model and {data} name their {m} classes differently ({shown(differ)}): class ids are scored by "
                "position, so if these are the same classes in another order this mAP is wrong; check the data "
                "YAML's names: against the model's training data")
    return (f"the model predicts {n} classes and {data} has {m}: its class ids are scored as the data's "
            f"({shown(range(m))}), so this mAP means little unless it was trained on these classes. Score a "
            "teacher of other classes through a class map: `detdistill eval ... --class-map auto` (the data YAML's "
            "coco_classes block, else class names), or evaluate(..., class_map={model id: data id}) in Python")


def evaluate(
    model: str | Path | Detector,
    data: str | Path,
    *,
    split: str = "val",
    imgsz: int | None = None,
    limit: int | None = None,
    backend: str = "auto",
    device: str = "cpu",
    rect: bool = False,
    rect_batch: int = 32,
    class_map: dict | None = None,
    int8: str = "auto",
    files: list[Path] | None = None,
    keep_records: bool = False,
    corrupt: str | tuple[str, int] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on the ``split`` of a YOLO data YAML. ``limit`` takes the first N images.

    ``rect`` (``.pt`` only) feeds each image at its batch's minimal rectangle, as ``YOLO(pt).val()`` does
    by default with ``batch=rect_batch``; otherwise every image is letterboxed to the square input.
    ``class_map`` ({model class: dataset class}, ids or names) scores a model trained on other classes (e.g.
    ``{"car": "Car", "truck": "Truck"}`` for a COCO teacher on a vehicles dataset): its detections of mapped
    classes are relabelled, the rest dropped.
    ``int8``: how an INT8 ONNX runs (``auto``: a tensorrt-target model simulated, a cpu-target one on the
    integer kernels). ``files``: evaluate these images of the dataset instead of the split (e.g. a test half).
    ``keep_records``: keep each image's COCO matches in ``records`` (for :mod:`detdistill.export.compare`).
    ``corrupt`` (``"fog:3"`` or ``("fog", 3)``): score on the images under that corruption of
    :mod:`detdistill.data.corruptions`, seeded per file name; labels are unchanged (nothing moves).
    """
    if not isinstance(model, (str, Path, Detector)):
        raise TypeError(f"model is the path of a .pt, .onnx or .engine (or a Detector), got {type(model).__name__}")
    if not isinstance(data, (str, Path)):
        raise TypeError(f"data is the path of a YOLO data YAML, got {type(data).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)):
        raise TypeError(f"limit is a number of images, e.g. limit=100, got {limit!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 image (or left out for the whole split), got {limit}")
    if corrupt is not None:
        corrupt = corruptions.one_condition(corrupt)  # fail before the model loads
    ds = load_dataset(data)
    what = f"split '{split}' of {data}" if files is None else "the images to evaluate"
    files = list(files) if files is not None else ds.images(split)
    # before the model loads: a missing labels folder would score every image as a background image (mAP 0)
    require_labels(files, what)
    files = files[:limit]
    det = model if isinstance(model, Detector) else open_detector(model, imgsz=imgsz, backend=backend, device=device,
                                                                  int8=int8)
    if class_map is not None:
        class_map = model_to_data_ids(class_map, det.names, ds.names, data)
    if det.names and len(det.names) < len(ds.names) and class_map is None:
        raise ValueError(f"the model knows {len(det.names)} classes but {data} has {len(ds.names)}: "
                         "evaluate on the dataset the model was trained for")
    if rect and not isinstance(det.backend, TorchBackend):
        raise ValueError("rect evaluation needs a dynamic-shape model: use it with a .pt (static ONNX/engines "
                         "always see the square input)")
    shapes = rect_shapes(files, max(det.imgsz), rect_batch, det.backend.info.stride) if rect else {}
    ground_truth, detections, sizes = [], [], []
    truncated = 0
    for f in files:
        img, truncated_image = read_scorable(f)
        truncated += truncated_image
        if corrupt is not None:
            try:
                img = corruptions.corrupt(img, *corrupt, seed=corruptions.image_seed(f))
            except corruptions.CorruptionError as e:
                raise corruptions.CorruptionError(f"{f}: {e}") from None
        ground_truth.append(read_labels(f, img.shape[:2]))
        if problem := unnamed_class_ids(label_path(f), ground_truth[-1][0].tolist(), ds.names, data):
            raise ValueError(problem)
        sizes.append(img.shape[:2])
        res = det.detect(img, shapes.get(f))
        boxes, scores, ids = res.boxes, res.scores, res.class_ids
        if class_map is not None:
            keep = np.isin(ids, list(class_map))
            boxes, scores = boxes[keep], scores[keep]
            ids = np.array([class_map[int(c)] for c in ids[keep]], np.int64)
        detections.append((boxes, scores, ids))
    if class_map is None and corrupt is None and (mismatch := class_count_warning(det, data)):
        warnings.warn(mismatch, OtherClassesWarning, stacklevel=2)  # after every check: an error comes alone
    if class_map is not None and (left := unmapped_classes_warning(class_map, ds.names, [g[0] for g in ground_truth])):
        warnings.warn(left, UnmappedClassesWarning, stacklevel=2)
    m = coco_metrics(ground_truth, detections, sizes, keep_records=keep_records)
    for record, photo in zip(m.records or [], photo_groups(files)):
        record.photo = photo  # copies of one photo are drawn together by detdistill.export.compare
    return EvalResult(m.map50_95, m.map50, len(files), sum(len(c) for c, _ in ground_truth), m.per_class_ap,
                      describe_backend(det.backend), m.records, m.map75, m.ap_small, m.ap_medium, m.ap_large,
                      sum(not label_path(f).is_file() for f in files), truncated)


def read_scorable(path: Path) -> tuple[np.ndarray, bool]:
    """An image of the split to score, and whether it is truncated (decoded all the same, its missing part grey:
    its labels count, so it cannot be left out). Raises :class:`ImageError` for a file that cannot be decoded."""
    img, why = decode_checked(path)
    if img is not None:
        return img, False
    if why.startswith("truncated"):
        return read_bgr(path), True
    raise ImageError(f"cannot score {path}: {why}; replace the file, or remove it and its label file")
