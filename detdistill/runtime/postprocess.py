"""Decode raw YOLO head outputs and run class-aware NMS in numpy, then map boxes to the frame.

Head layouts understood:

* two outputs, ``boxes`` ``(B, 4, N)`` xywh pixels and ``scores`` ``(B, nc, N)`` (detdistill export);
  :func:`decode` runs NMS on them, :func:`decode_topk` ranks them without NMS (NMS-free one-to-one heads);
* one output ``(B, 4 + nc, N)`` (ultralytics' own ONNX/engine export);
* ``num_dets`` / ``det_boxes`` / ``det_scores`` / ``det_classes`` (NMS in the graph): :func:`graph_detections`;
* one output ``(B, K, 6)`` of ranked rows ``x1, y1, x2, y2, score, class`` (ultralytics' export with ``nms=True``, or
  an end-to-end head): :func:`row_detections`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .letterbox import LetterboxInfo

MAX_WH = 7680  # class offset for class-aware NMS, larger than any input side
NMS_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")  # a model with NMS in its graph
ROW_WIDTH = 6  # x1, y1, x2, y2, score, class: a detection row (a raw head has hundreds of anchors, never 6)


def is_rows(shapes: Sequence[Sequence[int | str | None]]) -> bool:
    """Whether outputs of these shapes are one ``(B, K, 6)`` tensor of ranked detection rows."""
    return len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][-1] == ROW_WIDTH


def head_layout_problem(shapes: Sequence[Sequence[int | str | None]]) -> str | None:
    """Why a model with outputs of these shapes (a dimension unknown until run: a name or None) is not one of the
    head layouts above, or None when it is one."""
    known = [[d if isinstance(d, int) and d > 0 else None for d in shape] for shape in shapes]
    if len(known) == len(NMS_OUTPUTS):  # NMS in the graph (read by position when named otherwise)
        return None
    if is_rows(known) or (len(known) == 1 and len(known[0]) == 3 and (known[0][1] is None or known[0][1] >= 5)):
        return None
    if len(known) == 2 and all(len(k) == 3 for k in known) and any(k[1] in (None, 4) for k in known):
        return None
    given = ", ".join("(" + ", ".join("?" if d is None else str(d) for d in k) + ")" for k in known) or "none"
    return (f"its outputs are {given}, where a YOLO detector gives one (batch, 4 + classes, anchors) output, or boxes "
            "(batch, 4, anchors) and scores (batch, classes, anchors), detection rows (batch, k, 6), or the four outputs "
            "of NMS in the graph")


def split_head(outputs: Sequence[np.ndarray], nc: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(boxes (B,4,N), scores (B,nc,N))`` from one or two raw head outputs."""
    if len(outputs) == 2:
        boxes, scores = outputs
        if boxes.shape[1] != 4:
            boxes, scores = scores, boxes
    elif len(outputs) == 1:
        y = outputs[0]
        if y.ndim != 3 or y.shape[1] < 5:
            raise ValueError(f"expected a (B, 4+nc, N) head output, got shape {y.shape}")
        boxes, scores = y[:, :4], y[:, 4:4 + nc] if nc else y[:, 4:]
    else:
        raise ValueError(f"expected 1 or 2 head outputs, got {len(outputs)}")
    if boxes.shape[1] != 4 or boxes.shape[-1] != scores.shape[-1]:
        raise ValueError(f"head outputs do not match: boxes {boxes.shape}, scores {scores.shape}")
    return boxes, scores


def xywh2xyxy(b: np.ndarray) -> np.ndarray:
    """``(N, 4)`` centre-size boxes -> corner boxes."""
    out = np.empty_like(b)
    half = b[:, 2:] / 2
    out[:, :2] = b[:, :2] - half
    out[:, 2:] = b[:, :2] + half
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS on ``(N, 4)`` xyxy boxes; indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size and (max_keep is None or len(keep) < max_keep):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(overlap > iou)]
    return np.asarray(keep, dtype=np.int64)


def decode(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    classes: Sequence[int] | None = None,
    multi_label: bool = False,
    agnostic: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image: ``boxes (4, N)`` xywh, ``scores (nc, N)`` -> xyxy boxes, scores, class ids after NMS.

    ``multi_label`` keeps every (anchor, class) pair above ``conf`` (validation); otherwise only each
    anchor's best class (prediction).
    """
    if not 0 <= conf <= 1 or not 0 <= iou <= 1:
        raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
    scores = scores.T  # (N, nc)
    cand = scores.max(1) > conf
    xyxy = xywh2xyxy(boxes.T[cand].astype(np.float32, copy=False))
    scores = scores[cand]
    if multi_label and scores.shape[1] > 1:
        i, j = np.nonzero(scores > conf)
        xyxy, score, cls = xyxy[i], scores[i, j], j
    else:
        cls = scores.argmax(1)
        score = scores[np.arange(len(cls)), cls]
        ok = score > conf
        xyxy, score, cls = xyxy[ok], score[ok], cls[ok]
    if classes is not None:
        ok = np.isin(cls, np.asarray(classes))
        xyxy, score, cls = xyxy[ok], score[ok], cls[ok]
    if len(score) > max_nms:
        top = np.argsort(-score, kind="stable")[:max_nms]
        xyxy, score, cls = xyxy[top], score[top], cls[top]
    offset = 0 if agnostic else cls[:, None].astype(np.float32) * MAX_WH
    keep = nms(xyxy + offset, score, iou, max_det)
    return xyxy[keep], score[keep].astype(np.float32), cls[keep].astype(np.int64)


def decode_topk(
    boxes: np.ndarray,
    scores: np.ndarray,
    *,
    conf: float = 0.25,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image of an NMS-free head: ``boxes (4, N)`` xywh, ``scores (nc, N)`` -> the best (box, class) pairs.

    The ``max_det`` anchors with the highest class score, then the ``max_det`` best (anchor, class) pairs among
    them, highest first, those above ``conf`` kept: the one-to-one head's own top-k (an anchor may carry several
    classes), with no NMS.
    """
    if not 0 <= conf <= 1:
        raise ValueError(f"conf must lie in [0, 1], got conf={conf}")
    scores = scores.T  # (N, nc)
    if classes is not None:
        keep = np.zeros(scores.shape[1], bool)
        keep[np.asarray(classes, np.int64)] = True
        scores = np.where(keep[None], scores, 0)
    k = min(max_det, scores.shape[0])
    best = scores.max(1)
    anchors = _top(best, k)
    pairs = scores[anchors].ravel()
    top = _top(pairs, min(k, pairs.size))
    anchor, cls = anchors[top // scores.shape[1]], top % scores.shape[1]
    score = pairs[top]
    ok = score > conf
    xyxy = xywh2xyxy(boxes.T[anchor[ok]].astype(np.float32, copy=False))
    return xyxy, score[ok].astype(np.float32), cls[ok].astype(np.int64)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first."""
    if k < values.size:
        part = np.argpartition(-values, k - 1)[:k]
        return part[np.argsort(-values[part], kind="stable")]
    return np.argsort(-values, kind="stable")


def graph_detections(
    outputs: dict[str, np.ndarray],
    *,
    conf: float = 0.25,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    image: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image of a model with NMS in the graph: its fixed-size outputs -> xyxy boxes, scores, class ids.

    Keeps the first ``num_dets`` rows (already ranked), those above ``conf`` and of ``classes``, at most ``max_det``.
    """
    n = int(np.asarray(outputs["num_dets"]).reshape(-1)[image])
    boxes = np.asarray(outputs["det_boxes"][image][:n], np.float32)
    score = np.asarray(outputs["det_scores"][image][:n], np.float32)
    cls = np.asarray(outputs["det_classes"][image][:n]).astype(np.int64)
    ok = score > conf
    if classes is not None:
        ok &= np.isin(cls, np.asarray(classes))
    return boxes[ok][:max_det], score[ok][:max_det], cls[ok][:max_det]


def row_detections(rows: np.ndarray, *, conf: float = 0.25, classes: Sequence[int] | None = None, max_det: int = 300
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``(K, 6)`` detection rows (``x1, y1, x2, y2, score, class``) -> xyxy boxes, scores, class ids:
    those above ``conf`` and of ``classes``, best first, at most ``max_det``."""
    rows = np.asarray(rows, np.float32)
    cls = rows[:, 5].astype(np.int64)
    ok = rows[:, 4] > conf
    if classes is not None:
        ok &= np.isin(cls, np.asarray(classes))
    kept = np.flatnonzero(ok)[np.argsort(-rows[ok, 4], kind="stable")][:max_det]
    return rows[kept, :4], rows[kept, 4], cls[kept]


def scale_boxes(xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map xyxy boxes from the letterboxed input back to the original frame, clipped to it."""
    out = xyxy.astype(np.float32, copy=True)
    (gy, gx), (px, py) = info.gain, info.pad
    out[:, [0, 2]] = (out[:, [0, 2]] - px) / gx
    out[:, [1, 3]] = (out[:, [1, 3]] - py) / gy
    h0, w0 = info.orig_shape
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w0)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h0)
    return out
