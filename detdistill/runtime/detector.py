"""The one inference facade: BGR frame in, boxes/scores/class ids in frame pixels out."""

from __future__ import annotations

import inspect
import numbers
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Backend, backend_for
from .letterbox import MODES, LetterboxInfo, check_image, preprocess
from .letterbox import letterbox as fit_letterbox
from ..names import class_key
from .postprocess import (NMS_OUTPUTS, decode, decode_topk, graph_detections, head_layout_problem, is_rows,
                          row_detections, scale_boxes, split_head)


@dataclass
class Detections:
    """Detections of one frame: ``boxes (N,4)`` float32 xyxy pixels, ``scores (N,)``, ``class_ids (N,)`` int64."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


ROWS_EXPORT_CONF = 0.25  # ultralytics' export keeps detection rows above this score unless told otherwise


class Detector:
    """Run an exported YOLO detector (``.onnx`` via ONNX Runtime, ``.engine`` via TensorRT) on BGR frames.

    The model's metadata says what runs on the host: decode + NMS (``postprocess: host_nms``), a top-k of an
    NMS-free head (``none``; ``iou`` and ``multi_label`` do not apply), or nothing but a ``conf`` / ``classes`` /
    ``max_det`` filter of the graph's own NMS (``graph_nms``; its IoU is the one it was exported with). A model
    with in-graph preprocessing takes uint8 frames of one size as they are.

    Args:
        model: path to ``.onnx`` / ``.engine``, or an already built backend object.
        conf: score threshold. iou: NMS IoU threshold. classes: keep only these class ids (integers; one id alone
            is taken as ``[id]``; :attr:`names` maps ids to names).
        backend: ``auto`` (by file suffix), ``onnxruntime`` or ``tensorrt``.
        max_det: most boxes per frame (at least 1). multi_label: one box per (anchor, class) above ``conf``.
        letterbox: ``val`` / ``predict`` to override the model's letterbox mode (metadata, default ``val``).
        fit_frames: for a model with in-graph preprocessing, letterbox frames of another size to its frame size
            on the host first (evaluation on images of many sizes) instead of refusing them.
        **backend_kwargs: passed to the backend, e.g. ``device="cuda"`` for ONNX Runtime.
    """

    def __init__(
        self,
        model: str | Path | Backend,
        conf: float = 0.25,
        iou: float = 0.7,
        classes: int | Sequence[int] | None = None,
        backend: str = "auto",
        *,
        max_det: int = 300,
        multi_label: bool = False,
        letterbox: str | None = None,
        fit_frames: bool = False,
        **backend_kwargs,
    ) -> None:
        for name, value in (("conf", conf), ("iou", iou)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number in [0, 1], e.g. {name}=0.5, got {value!r} (a "
                                f"{type(value).__name__})")
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
        need = f"max_det is the most boxes per frame, an integer of at least 1 (e.g. 300), got {max_det!r}"
        if not _is_int(max_det):
            raise TypeError(f"{need} (a {type(max_det).__name__})")
        if max_det < 1:
            raise ValueError(need)
        if isinstance(model, Backend):
            _check_options(backend_kwargs, None, None)
            self.backend = model
        else:
            name, cls = backend_for(str(model), backend)
            _check_options(backend_kwargs, name, cls)
            self.backend = cls(str(model), **backend_kwargs)
        shapes = getattr(self.backend, "output_shapes", None)  # known before a frame runs (ONNX Runtime)
        if shapes is not None and (problem := head_layout_problem(shapes)):
            raise ValueError(f"{model} is not a YOLO detection model: {problem}; export a detection model with "
                             "`detdistill export` (or ultralytics' export of a detection .pt)")
        if shapes is not None and is_rows(shapes) and conf < ROWS_EXPORT_CONF:
            warnings.warn(f"this model ends in detection rows its graph chose (ultralytics' export with nms=True): "
                          f"scores below its export conf ({ROWS_EXPORT_CONF} unless set) are not there, so conf={conf} "
                          "cannot go past it and its mAP reads lower than the model's; export it with `detdistill "
                          "export` (--nms optional) to score it fully", stacklevel=2)
        info = self.backend.info
        if info.frame is None and np.dtype(getattr(self.backend, "input_dtype", np.float32)) == np.uint8:
            raise ValueError(f"{model} takes uint8 frames (its preprocessing is in the graph, as `detdistill export "
                             "--frame` makes it) but its metadata, which gives the frame size and letterbox, is missing "
                             "(a tool that rewrote the graph drops it): export it again with `detdistill export --frame`")
        if letterbox is not None:
            if letterbox not in MODES:
                raise ValueError(f"letterbox must be one of {MODES}, got {letterbox!r}")
            if info.frame is not None and letterbox != info.letterbox:
                raise ValueError(f"this model letterboxes in its graph ({info.letterbox}); its letterbox cannot be "
                                 f"changed to {letterbox!r}: export it again without --frame to choose one")
            info.letterbox = letterbox
        if info.imgsz is None:
            raise ValueError("the model has a dynamic input size and no 'imgsz' metadata; re-export it with detdistill")
        self.names: dict[int, str] = info.names or {}
        self.imgsz: tuple[int, int] = tuple(info.imgsz)
        self.conf, self.iou, self.classes = conf, iou, _class_ids(classes, self.names)
        self.max_det, self.multi_label = max_det, multi_label
        self.postprocess_mode = info.postprocess
        if self.postprocess_mode not in ("host_nms", "none", "graph_nms"):
            raise ValueError(f"unknown postprocess {self.postprocess_mode!r} in the model's metadata; re-export it")
        nms = info.nms
        if self.postprocess_mode == "graph_nms":
            if abs(float(nms.get("iou", iou)) - iou) > 1e-6:
                warnings.warn(f"this model runs NMS in its graph at IoU {nms.get('iou')}; iou={iou} does not apply "
                              "(export again with --nms-iou to change it)", stacklevel=2)
            if conf < float(nms.get("conf", 0.0)) or max_det > int(nms.get("max_det", max_det)):
                warnings.warn(f"this model's graph keeps scores above {nms.get('conf')} and at most "
                              f"{nms.get('max_det')} boxes; conf={conf}, max_det={max_det} cannot go past them, so "
                              "its mAP reads lower than the model's: export it again with --nms-conf 0.001 "
                              "--max-det 300 (the defaults) to score it fully", stacklevel=2)
        self.frame: tuple[int, int] | None = info.frame
        self.fit_frames = fit_frames
        self._frame_box: LetterboxInfo | None = None
        if self.frame is not None:  # the graph's letterbox, to map its boxes back to the frame
            self._frame_box = fit_letterbox(np.zeros((*self.frame, 3), np.uint8), self.imgsz, mode=info.letterbox,
                                        pad_value=info.pad_value)[1]
        self.last_timings: dict[str, float] = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        shape = getattr(self.backend, "input_shape", None) or (1,)
        self.fixed_batch = shape[0] if shape[0] > 1 else 1  # an export --batch N model takes N images per call
        if self.fixed_batch > 1:
            warnings.warn(f"{model} takes a fixed batch of {self.fixed_batch}: an image alone runs as a batch of "
                          f"{self.fixed_batch} copies ({self.fixed_batch}x the work); export it with --dynamic, or "
                          "without --batch, to run one frame at a time", stacklevel=2)

    def preprocess(self, frame_bgr: np.ndarray, imgsz: tuple[int, int] | None = None):
        """Letterbox exactly as the model was validated; returns ``(input, LetterboxInfo)``.

        A model with in-graph preprocessing gets the frame itself (``LetterboxInfo`` is then a list: the
        graph's letterbox, then the host's fit to the frame size, if any: the order that maps boxes back).
        """
        info = self.backend.info
        if self.frame is not None:
            if imgsz is not None and tuple(imgsz) != self.imgsz:
                fh, fw = self.frame
                raise ValueError(f"imgsz {tuple(imgsz)}: this model takes {fw}x{fh} camera frames and letterboxes them "
                                 f"to {self.imgsz} in its graph; leave imgsz out")
            return self._frame_input(frame_bgr)
        return preprocess(frame_bgr, imgsz or self.imgsz, mode=info.letterbox, pad_value=info.pad_value,
                          dtype=self.backend.input_dtype, long_side=max(self.imgsz) if imgsz else None)

    def _frame_input(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, list[LetterboxInfo]]:
        check_image(frame_bgr)
        (h, w), (fh, fw) = frame_bgr.shape[:2], self.frame
        boxes = [self._frame_box]
        if (h, w) != (fh, fw):
            if not self.fit_frames:
                raise ValueError(
                    f"this model takes {fw}x{fh} frames (its letterbox is in the graph), got a {w}x{h} frame: set the "
                    f"source to {fw}x{fh}, or export the model again with --frame {w}x{h}")
            info = self.backend.info
            frame_bgr, fit = fit_letterbox(frame_bgr, (fh, fw), mode=info.letterbox, pad_value=info.pad_value)
            boxes.append(fit)
        return np.ascontiguousarray(frame_bgr[None], dtype=self.backend.input_dtype), boxes

    def fill_batch(self, x: np.ndarray) -> np.ndarray:
        """``x`` padded with copies of its last image to the model's fixed batch (unchanged for other models)."""
        missing = self.fixed_batch - x.shape[0]
        return np.concatenate([x, np.repeat(x[-1:], missing, axis=0)]) if missing > 0 else x

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        """Detect objects in one uint8 HxWx3 BGR frame."""
        return self.detect(frame_bgr)

    def detect(self, frame_bgr: np.ndarray, imgsz: tuple[int, int] | None = None) -> Detections:
        """Like calling the detector; ``imgsz`` overrides the input size (dynamic-shape backends only)."""
        t0 = time.perf_counter()
        x, lb = self.preprocess(frame_bgr, imgsz)
        t1 = time.perf_counter()
        outs = self.backend.infer(self.fill_batch(x))
        t2 = time.perf_counter()
        xyxy, score, cls = self.postprocess(outs)
        res = Detections(to_frame(xyxy, lb), score, cls)
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                             "postprocess": (t3 - t2) * 1e3}
        return res

    def postprocess(self, outs: list[np.ndarray], image: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs of one image of the batch -> xyxy boxes in input pixels, scores, class ids.

        What runs is the model's ``postprocess_mode``: decode + NMS, the top-k of an NMS-free head, or the
        filter of the graph's NMS outputs.
        """
        if self.postprocess_mode == "graph_nms" or len(outs) == len(NMS_OUTPUTS):  # the metadata may be lost
            names = getattr(self.backend, "output_names", None) or getattr(self.backend, "outputs", None)
            named = dict(zip(names if names and set(NMS_OUTPUTS) <= set(names) else NMS_OUTPUTS, outs))
            return graph_detections(named, conf=self.conf, classes=self.classes, max_det=self.max_det, image=image)
        if is_rows([o.shape for o in outs]):  # ranked rows: the graph's NMS or end-to-end head already chose them
            return row_detections(outs[0][image], conf=self.conf, classes=self.classes, max_det=self.max_det)
        boxes, scores = split_head(outs, len(self.names) or None)
        if self.postprocess_mode == "none":
            return decode_topk(boxes[image], scores[image], conf=self.conf, classes=self.classes, max_det=self.max_det)
        return decode(boxes[image], scores[image], conf=self.conf, iou=self.iou, classes=self.classes,
                      multi_label=self.multi_label, max_det=self.max_det)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_options(given: dict, backend: str | None, cls: type | None) -> None:
    """Refuse a keyword that neither :class:`Detector` nor the backend ``cls`` that opens the model takes (``None``:
    the model came as a backend object, which takes none)."""

    def names(fn: Callable[..., object]) -> list[str]:
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in kinds and p.name not in ("self", "model", "path")]

    valid = names(cls) if cls is not None else []
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    extra = f", and for the {backend} backend {', '.join(valid)}" if cls is not None else \
        " (backend options apply only when Detector opens the model from a path)"
    what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
    raise TypeError(f"Detector got {what} {', '.join(map(repr, unknown))}: its options are "
                    f"{', '.join(names(Detector.__init__))}{extra}")


def class_ids_of(items: Iterable[object], names: dict[int, str]) -> list[int | None]:
    """Each item's class id: an integer as it is, a class name of ``names`` (see :func:`class_key`) as its id, else
    None."""
    by_name = {class_key(v): k for k, v in names.items()}
    return [int(c) if _is_int(c) else by_name.get(class_key(c)) if isinstance(c, str) else None for c in items]


def _class_ids(classes: object, names: dict[int, str]) -> list[int] | None:
    """``classes`` as a list of class ids (one id alone is taken as ``[id]``), refusing names and unknown ids."""
    if classes is None:
        return None
    items = list(classes) if isinstance(classes, Iterable) and not isinstance(classes, str) else [classes]
    if not all(_is_int(c) for c in items):
        ids = class_ids_of(items, names)
        message = f"classes {items!r}: class ids are integers here"
        if None not in ids:  # names this model has: say their ids
            pairs = ", ".join(f"{c!r} is {i}" for c, i in zip(items, ids) if isinstance(c, str))
            raise TypeError(f"{message}; in this model {pairs}: pass classes={[int(i) for i in ids]}")
        known = f", 0..{len(names) - 1} in this model (Detector.names maps them to names)" if names else \
            ", e.g. classes=[0]"
        raise TypeError(message + known)
    ids = [int(c) for c in items]
    if names and any(c not in names for c in ids):
        raise ValueError(f"classes {ids} not all in the model's class ids 0..{len(names) - 1}")
    return ids


def to_frame(xyxy: np.ndarray, lb: LetterboxInfo | list[LetterboxInfo]) -> np.ndarray:
    """Boxes in model-input pixels -> frame pixels, through one letterbox or the chain :meth:`Detector.preprocess` gives."""
    for step in lb if isinstance(lb, list) else [lb]:
        xyxy = scale_boxes(xyxy, step)
    return xyxy
