"""mAP50-95 / mAP50 of any artifact (.pt, .onnx, INT8 .onnx, .engine) through the deployed runtime pipeline.

Predictions go through :class:`detdistill.runtime.Detector` (same letterbox, decode and NMS as on the
device) and are matched to YOLO labels in original-image pixels. The AP math follows the usual
ultralytics conventions (IoU thresholds 0.50:0.05:0.95, 101-point interpolated AP, classes present in
the labels), so numbers agree with ``YOLO(pt).val()``. torch is imported only for ``.pt`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import corruptions
from ..runtime import Detector
from ..runtime.cpu import instruction_set
from ..runtime.metadata import ModelInfo
from ..data.dataset import load_dataset, read_labels
from ..data.images import read_bgr

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_POINTS = np.linspace(0, 1, 101)  # where the precision envelope is sampled (COCO's 101 points)
_RECALL_STEPS = np.diff(_RECALL_POINTS)


@dataclass
class ImageRecord:
    """One image's matched predictions: what mAP needs to be recomputed on any resample of images."""

    tp: np.ndarray  # (P, 10) bool
    conf: np.ndarray  # (P,)
    pred_cls: np.ndarray  # (P,)
    gt_cls: np.ndarray  # (M,)


def class_ap(records: list[ImageRecord], index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP ``(C, 10)`` of the images ``records[index]`` (all by default; repeats count again)."""
    rs = records if index is None else [records[i] for i in index]
    if not rs:
        return np.zeros(0, np.int64), np.zeros((0, len(IOU_THRESHOLDS)))
    return average_precision(*(np.concatenate([getattr(r, k) for r in rs]) for k in ("tp", "conf", "pred_cls", "gt_cls")))


def map_of(records: list[ImageRecord], index: np.ndarray | None = None) -> tuple[float, float]:
    """(mAP50-95, mAP50) of the images ``records[index]``; 0 where they hold no labelled object."""
    classes, ap = class_ap(records, index)
    return (float(ap.mean()), float(ap[:, 0].mean())) if len(classes) else (0.0, 0.0)


@dataclass
class EvalResult:
    """Detection accuracy on one split."""

    map50_95: float
    map50: float
    images: int
    instances: int
    per_class_ap: dict[int, float] = field(default_factory=dict)
    evaluator: str = ""  # what computed the predictions, e.g. "ONNX Runtime CPU INT8 kernels (avx2)"
    records: list[ImageRecord] | None = None  # per image, with keep_records=True (bootstrap intervals)

    def as_dict(self) -> dict:
        return {"mAP50-95": self.map50_95, "mAP50": self.map50, "images": self.images, "instances": self.instances,
                "evaluator": self.evaluator}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-7)


def match(pred_boxes: np.ndarray, pred_cls: np.ndarray, gt_boxes: np.ndarray, gt_cls: np.ndarray,
          pred_scores: np.ndarray | None = None) -> np.ndarray:
    """``(P, 10)`` bool: is prediction p a true positive at each IoU threshold.

    COCO-style greedy matching: predictions in decreasing score, each claims the unclaimed
    same-class ground truth it overlaps most, separately at every threshold.
    """
    tp = np.zeros((len(pred_boxes), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(pred_boxes) or not len(gt_boxes):
        return tp
    order = np.argsort(-pred_scores, kind="stable") if pred_scores is not None else np.arange(len(pred_boxes))
    iou = box_iou(gt_boxes, pred_boxes) * (gt_cls[:, None] == pred_cls[None, :])
    claimed = np.zeros((len(gt_boxes), len(IOU_THRESHOLDS)), dtype=bool)
    cols = np.arange(len(IOU_THRESHOLDS))
    for j in order:
        if iou[:, j].max() < IOU_THRESHOLDS[0]:
            continue
        free = np.where(claimed, 0.0, iou[:, j, None])  # (G, T)
        best = free.argmax(0)
        hit = free[best, cols] >= IOU_THRESHOLDS
        tp[j] = hit
        claimed[best[hit], cols[hit]] = True
    return tp


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated area under the precision envelope; precision is 0 beyond the last recall."""
    last = recall[-1] if len(recall) else 1.0
    r = np.concatenate(([0.0], recall, [last, 1.0]))
    p = np.concatenate(([1.0], precision, [0.0, 0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]
    y = np.interp(_RECALL_POINTS, r, p)
    return float(np.add.reduce(_RECALL_STEPS * (y[1:] + y[:-1]) / 2.0))  # np.trapezoid, without its overhead


def average_precision(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, gt_cls: np.ndarray):
    """Per-class AP ``(C, 10)`` for the classes present in ``gt_cls``; returns (classes, ap)."""
    order = np.argsort(-conf, kind="stable")
    tp, pred_cls = tp[order], pred_cls[order]
    classes, counts = np.unique(gt_cls, return_counts=True)
    ap = np.zeros((len(classes), tp.shape[1]))
    for ci, (c, n_gt) in enumerate(zip(classes, counts)):
        sel = pred_cls == c
        if not sel.any():
            continue
        tpc = tp[sel].cumsum(0)
        fpc = (1 - tp[sel]).cumsum(0)
        recall = tpc / (n_gt + 1e-16)
        precision = tpc / (tpc + fpc)
        for k in range(tp.shape[1]):
            ap[ci, k] = interpolated_ap(recall[:, k], precision[:, k])
    return classes, ap


def rect_shapes(files: list[Path], imgsz: int, batch: int, stride: int) -> dict[Path, tuple[int, int]]:
    """Per-image input shapes of rectangular validation: images sorted by aspect ratio, batched, and each batch
    letterboxed to the smallest stride-multiple rectangle (plus half a stride) that holds all of them."""
    import cv2

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


INT8_MODES = ("auto", "kernels", "simulate")


def int8_kernels_for(model: str | Path, int8: str = "auto") -> bool:
    """Whether an ONNX model runs on ONNX Runtime's integer kernels (else Q/DQ simulated in float).

    ``auto`` simulates the ``tensorrt`` target (what an int32-accumulating engine computes) and runs the
    ``cpu`` target on the integer kernels it was made for.
    """
    if int8 not in INT8_MODES:
        raise ValueError(f"int8 must be one of {INT8_MODES}, got {int8!r}")
    if int8 != "auto":
        return int8 == "kernels"
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    return ModelInfo.from_mapping(meta).quantization.get("target") != "tensorrt"


def describe_evaluator(det: Detector) -> str:
    """Name what computes ``det``'s predictions, with the CPU instruction set where it matters."""
    backend = det.backend
    q = backend.info.quantization
    providers = getattr(backend, "providers", None)
    if providers is None:
        return type(backend).__name__.replace("Backend", "")  # Torch, Trt
    where = "CPU" if providers[0] == "CPUExecutionProvider" else providers[0].replace("ExecutionProvider", "")
    isa = f" ({instruction_set()})" if where == "CPU" else ""
    if not q:
        return f"ONNX Runtime {where} FP32{isa}"
    if not backend.int8_kernels:
        label = "simulated TensorRT INT8" if q.get("target") == "tensorrt" else "simulated INT8"
        return f"{label} (Q/DQ in float on ONNX Runtime {where})"
    return f"ONNX Runtime {where} INT8 kernels, {q.get('scheme', 'u8s8')}{isa}"


def open_detector(model: str | Path, *, imgsz: int | None = None, backend: str = "auto", device: str = "cpu",
                  conf: float = 0.001, iou: float = 0.7, max_det: int = 300, int8: str = "auto") -> Detector:
    """A validation-mode Detector (low conf, multi-label NMS) for any artifact; ``.pt`` runs in PyTorch.

    ``int8`` (``auto``, ``kernels``, ``simulate``): how an INT8 Q/DQ ONNX runs, see :func:`int8_kernels_for`.
    """
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"model {model} not found")
    kwargs = {"conf": conf, "iou": iou, "max_det": max_det, "multi_label": True}
    if model.suffix == ".pt":
        from .torch_backend import TorchBackend

        return Detector(TorchBackend(model, imgsz or 640, device=device), **kwargs)
    if model.suffix not in {".onnx", ".engine", ".plan"}:
        raise ValueError(f"{model}: expected a .pt, .onnx or .engine file")
    extra = {"device": device, "int8_kernels": int8_kernels_for(model, int8)} if model.suffix == ".onnx" else {}
    det = Detector(model, backend=backend, **kwargs, **extra)
    if imgsz and tuple(det.imgsz) != (imgsz, imgsz):
        raise ValueError(f"{model} takes imgsz {det.imgsz}, not {imgsz}: re-export it at {imgsz} or drop --imgsz")
    return det


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
    class_map: dict[int, int] | None = None,
    int8: str = "auto",
    files: list[Path] | None = None,
    keep_records: bool = False,
    corrupt: tuple[str, int] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on the ``split`` of a YOLO data YAML. ``limit`` takes the first N images.

    ``rect`` (``.pt`` only) feeds each image at its batch's minimal rectangle, as ``YOLO(pt).val()`` does
    by default with ``batch=rect_batch``; otherwise every image is letterboxed to the square input.
    ``class_map`` ({model class: dataset class}) scores a model trained on other classes (e.g. a COCO
    teacher on a vehicles dataset): its detections of mapped classes are relabelled, the rest dropped.
    ``int8``: how an INT8 ONNX runs (``auto``: a tensorrt-target model simulated, a cpu-target one on the
    integer kernels). ``files``: evaluate these images of the dataset instead of the split (e.g. a test half).
    ``keep_records``: keep each image's matches in ``records`` (for :mod:`detdistill.export.compare`).
    ``corrupt`` (``(name, severity)``, e.g. ``("fog", 3)``): score on the images under that corruption of
    :mod:`detdistill.data.corruptions`, seeded per file name; labels are unchanged (nothing moves).
    """
    if corrupt is not None:
        corruptions.require(*corrupt)  # fail before the model loads
    ds = load_dataset(data)
    det = model if isinstance(model, Detector) else open_detector(model, imgsz=imgsz, backend=backend, device=device,
                                                                  int8=int8)
    if det.names and len(det.names) < len(ds.names) and class_map is None:
        raise ValueError(f"the model knows {len(det.names)} classes but {data} has {len(ds.names)}: "
                         "evaluate on the dataset the model was trained for")
    files = (list(files) if files is not None else ds.images(split))[:limit]
    if rect and not str(model).endswith(".pt"):
        raise ValueError("rect evaluation needs a dynamic-shape model: use it with a .pt (static ONNX/engines "
                         "always see the square input)")
    shapes = rect_shapes(files, max(det.imgsz), rect_batch, det.backend.info.stride) if rect else {}
    records: list[ImageRecord] = []
    for f in files:
        img = read_bgr(f)
        if corrupt is not None:
            img = corruptions.corrupt(img, *corrupt, seed=corruptions.image_seed(f))
        g_cls, g_box = read_labels(f, img.shape[:2])
        res = det.detect(img, shapes.get(f))
        boxes, scores, ids = res.boxes, res.scores, res.class_ids
        if class_map is not None:
            keep = np.isin(ids, list(class_map))
            boxes, scores = boxes[keep], scores[keep]
            ids = np.array([class_map[int(c)] for c in ids[keep]], np.int64)
        records.append(ImageRecord(match(boxes, ids, g_box, g_cls, scores), scores, ids, g_cls))
    classes, ap = class_ap(records)
    instances = sum(len(r.gt_cls) for r in records)
    evaluator = describe_evaluator(det)
    kept = records if keep_records else None
    if not len(classes):
        return EvalResult(0.0, 0.0, len(files), instances, evaluator=evaluator, records=kept)
    return EvalResult(float(ap.mean()), float(ap[:, 0].mean()), len(files), instances,
                      {int(c): float(a) for c, a in zip(classes, ap.mean(1))}, evaluator, kept)
