"""The one inference facade: BGR frame in, boxes/scores/class ids in frame pixels out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Backend, load_backend
from .letterbox import preprocess
from .postprocess import decode, scale_boxes, split_head


@dataclass
class Detections:
    """Detections of one frame: ``boxes (N,4)`` float32 xyxy pixels, ``scores (N,)``, ``class_ids (N,)`` int64."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class Detector:
    """Run an exported YOLO detector (``.onnx`` via ONNX Runtime, ``.engine`` via TensorRT) on BGR frames.

    Args:
        model: path to ``.onnx`` / ``.engine``, or an already built backend object.
        conf: score threshold. iou: NMS IoU threshold. classes: keep only these class ids.
        backend: ``auto`` (by file suffix), ``onnxruntime`` or ``tensorrt``.
        max_det: most boxes per frame. multi_label: one box per (anchor, class) above ``conf``.
        letterbox: ``val`` / ``predict`` to override the model's letterbox mode (metadata, default ``val``).
        **backend_kwargs: passed to the backend, e.g. ``device="cuda"`` for ONNX Runtime.
    """

    def __init__(
        self,
        model: str | Path | Backend,
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int] | None = None,
        backend: str = "auto",
        *,
        max_det: int = 300,
        multi_label: bool = False,
        letterbox: str | None = None,
        **backend_kwargs,
    ) -> None:
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
        self.backend = model if isinstance(model, Backend) else load_backend(str(model), backend, **backend_kwargs)
        info = self.backend.info
        if letterbox is not None:
            from .letterbox import MODES

            if letterbox not in MODES:
                raise ValueError(f"letterbox must be one of {MODES}, got {letterbox!r}")
            info.letterbox = letterbox
        if info.imgsz is None:
            raise ValueError("the model has a dynamic input size and no 'imgsz' metadata; re-export it with detdistill")
        self.names: dict[int, str] = info.names or {}
        self.imgsz: tuple[int, int] = tuple(info.imgsz)
        if classes is not None and self.names and any(c not in self.names for c in classes):
            raise ValueError(f"classes {list(classes)} not all in the model's class ids 0..{len(self.names) - 1}")
        self.conf, self.iou, self.classes = conf, iou, classes
        self.max_det, self.multi_label = max_det, multi_label
        self.last_timings: dict[str, float] = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}

    def preprocess(self, frame_bgr: np.ndarray, imgsz: tuple[int, int] | None = None):
        """Letterbox exactly as the model was validated; returns ``(input, LetterboxInfo)``."""
        info = self.backend.info
        return preprocess(frame_bgr, imgsz or self.imgsz, mode=info.letterbox, pad_value=info.pad_value,
                          dtype=self.backend.input_dtype, long_side=max(self.imgsz) if imgsz else None)

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        """Detect objects in one uint8 HxWx3 BGR frame."""
        return self.detect(frame_bgr)

    def detect(self, frame_bgr: np.ndarray, imgsz: tuple[int, int] | None = None) -> Detections:
        """Like calling the detector; ``imgsz`` overrides the input size (dynamic-shape backends only)."""
        t0 = time.perf_counter()
        x, lb = self.preprocess(frame_bgr, imgsz)
        t1 = time.perf_counter()
        outs = self.backend.infer(x)
        t2 = time.perf_counter()
        boxes, scores = split_head(outs, len(self.names) or None)
        xyxy, score, cls = decode(boxes[0], scores[0], conf=self.conf, iou=self.iou, classes=self.classes,
                                  multi_label=self.multi_label, max_det=self.max_det)
        res = Detections(scale_boxes(xyxy, lb), score, cls)
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                             "postprocess": (t3 - t2) * 1e3}
        return res
