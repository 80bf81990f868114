"""COCO box metrics through faster-coco-eval, and their fast re-accumulation on resamples of images.

The protocol is COCO's detection evaluation (Lin et al., "Microsoft COCO: Common Objects in Context",
ECCV 2014; cocodataset.org/#detection-eval, the ``COCOeval`` of pycocotools): per image and class the
top 100 detections by score are matched greedily, highest score first, to the unmatched ground truth
they overlap most, separately at each IoU threshold 0.50:0.05:0.95; per class the detections of all
images are ranked by score, and AP is the mean of the precision envelope at the 101 recall points
0:0.01:1; mAP is the mean over the classes that have ground truth. Small, medium and large objects are
those under 32², between 32² and 96², and over 96² pixels of box area (COCO uses mask area for its own
ground truth, box area for detections; YOLO labels have boxes only).

faster-coco-eval (a C++ port of ``COCOeval``, numpy its only dependency) does the matching and the
metrics. :class:`MatchTable` keeps its per-image matches and accumulates precision and recall again on
any resample of the images without matching again, as a bootstrap needs: on the identity resample it
reproduces COCOeval's mAP exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..dependencies import MissingDependencyError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's iouThrs
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs
MAX_DETS = 100  # COCOeval's maxDets[-1]: detections per image and class that count
AREAS = ("small", "medium", "large")  # COCOeval's area ranges besides "all"


@dataclass
class ImageRecord:
    """One image's detections as COCOeval matched them (area "all"): what mAP needs on any resample of images.

    ``tp[p, t]``: detection p matched a ground-truth box of its class at ``IOU_THRESHOLDS[t]``.
    """

    tp: np.ndarray  # (P, 10) bool
    conf: np.ndarray  # (P,)
    pred_cls: np.ndarray  # (P,)
    gt_cls: np.ndarray  # (M,) class of every ground-truth box
    photo: str | None = None  # the source photo of the image file (set by the evaluator; None: unknown)


@dataclass
class CocoMetrics:
    """COCOeval's box metrics of a set of images; an ``ap_*`` is None where no object has that size."""

    map50_95: float
    map50: float
    map75: float
    ap_small: float | None
    ap_medium: float | None
    ap_large: float | None
    per_class_ap: dict[int, float] = field(default_factory=dict)  # AP50-95 of each class with ground truth
    records: list[ImageRecord] | None = None


def _load_library():
    try:
        from faster_coco_eval import COCO, COCOeval_faster  # lazy: faster_coco_eval (optional on a device)
    except ImportError as e:  # the base install of a device has no evaluator
        raise MissingDependencyError("mAP is computed by faster-coco-eval: pip install faster-coco-eval "
                                     "(it comes with detdistill[runtime] and detdistill[export])") from e
    return COCO, COCOeval_faster


def _xywh(xyxy: np.ndarray) -> np.ndarray:
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def coco_metrics(
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    image_sizes: Sequence[tuple[int, int]],
    *,
    keep_records: bool = False,
) -> CocoMetrics:
    """COCO box metrics of images given in memory.

    ``ground_truth[i]``: ``(classes (M,), boxes (M, 4))`` of image i, xyxy pixels; ``detections[i]``:
    ``(boxes (P, 4) xyxy pixels, scores (P,), classes (P,))``; ``image_sizes[i]``: ``(height, width)``.
    Classes are the category ids. ``keep_records`` also returns each image's matches (:class:`ImageRecord`).
    """
    if not len(ground_truth) == len(detections) == len(image_sizes):
        raise ValueError(f"{len(ground_truth)} ground truths, {len(detections)} detections, {len(image_sizes)} sizes")
    gt_classes = sorted({int(c) for cls, _ in ground_truth for c in np.asarray(cls).tolist()})
    if not gt_classes:  # COCOeval would evaluate every class then; nothing is labelled, so nothing to score
        records = [ImageRecord(np.zeros((0, len(IOU_THRESHOLDS)), bool), np.zeros(0), np.zeros(0, np.int64),
                               np.zeros(0, np.int64)) for _ in ground_truth] if keep_records else None
        return CocoMetrics(0.0, 0.0, 0.0, None, None, None, {}, records)
    COCO, COCOeval_faster = _load_library()
    images, anns, dets = [], [], []
    for i, ((g_cls, g_box), (d_box, d_score, d_cls), (h, w)) in enumerate(zip(ground_truth, detections, image_sizes)):
        images.append({"id": i + 1, "height": int(h), "width": int(w)})
        for c, b in zip(np.asarray(g_cls).tolist(), _xywh(g_box).tolist()):
            # ids from 1: COCOeval marks an unmatched detection with ground-truth id 0
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c), "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0})
        for b, s, c in zip(_xywh(d_box).tolist(), np.asarray(d_score).tolist(), np.asarray(d_cls).tolist()):
            dets.append({"image_id": i + 1, "category_id": int(c), "bbox": b, "score": float(s)})
    quiet = lambda *a, **k: None  # noqa: E731
    gt = COCO({"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in gt_classes]},
              print_function=quiet)
    dt = gt.loadRes(dets)
    ev = COCOeval_faster(gt, dt, "bbox", print_function=quiet, separate_eval=keep_records)
    if not np.allclose(ev.params.iouThrs, IOU_THRESHOLDS) or ev.params.maxDets[-1] != MAX_DETS:
        raise RuntimeError("faster-coco-eval's defaults are not COCO's: this version is not supported")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = [float(s) for s in ev.stats]
    areas = {a: (None if stats[3 + k] < 0 else stats[3 + k]) for k, a in enumerate(AREAS)}
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K): area "all", 100 detections
    per_class = {int(c): float(precision[:, :, k].mean()) for k, c in enumerate(ev.params.catIds)
                 if (precision[:, :, k] > -1).all()}
    records = _records(ev, len(images)) if keep_records else None
    out = CocoMetrics(stats[0], stats[1], stats[2], areas["small"], areas["medium"], areas["large"], per_class, records)
    if records is not None:  # the matches were read from the library's per-image results: check them once
        again = MatchTable(records).map()  # equal to the last bit here; a tolerance for other builds of the library
        if not np.allclose(again, (out.map50_95, out.map50), rtol=0, atol=1e-9):
            raise RuntimeError(f"per-image matches read from faster-coco-eval give mAP {again}, its summary "
                               f"{(out.map50_95, out.map50)}: this faster-coco-eval version is not supported")
    return out


def _records(ev, n_images: int) -> list[ImageRecord]:
    """Each image's matches at area "all", from COCOeval's per-image, per-class evaluations.

    faster-coco-eval keeps them in C++ (``separate_eval=True``); each pickles to (detection matches (T x D, the
    matched ground-truth id or 0), ground-truth matches, detection scores (D, best first, at most 100), ground-truth
    ignore flags (G), detection ignore flags (T x D), matched pairs), stored class-major, then area, then image.
    """
    evals = ev._evalImgs_cpp
    cat_ids = list(ev.params.catIds)
    n_areas, n_t = len(ev.params.areaRng), len(IOU_THRESHOLDS)
    if len(evals) != len(cat_ids) * n_areas * n_images:
        raise RuntimeError(f"faster-coco-eval returned {len(evals)} image evaluations, expected "
                           f"{len(cat_ids) * n_areas * n_images}: this version is not supported")
    parts: list[list[tuple]] = [[] for _ in range(n_images)]
    for k, c in enumerate(cat_ids):
        for i in range(n_images):
            dt_match, _, scores, gt_ignore, dt_ignore, _ = evals[k * n_areas * n_images + i].__getstate__()
            if any(dt_ignore):  # only crowd or out-of-range boxes are ignored, and YOLO labels have neither
                raise RuntimeError("COCOeval ignored a detection at area 'all': crowd ground truth is not supported")
            n_gt = len(gt_ignore) - sum(gt_ignore)
            if scores or n_gt:
                tp = np.asarray(dt_match, np.int64).reshape(n_t, len(scores)).T > 0
                parts[i].append((tp, np.asarray(scores, np.float64), np.full(len(scores), c, np.int64),
                                 np.full(n_gt, c, np.int64)))
    records = []
    for p in parts:
        if p:
            records.append(ImageRecord(*(np.concatenate(x) for x in zip(*p))))
        else:
            records.append(ImageRecord(np.zeros((0, n_t), bool), np.zeros(0), np.zeros(0, np.int64),
                                       np.zeros(0, np.int64)))
    return records


class MatchTable:
    """Every detection of a list of :class:`ImageRecord`, in the order COCOeval accumulates them: by class, then
    by decreasing score, ties in image order. :meth:`map` accumulates precision and recall of any multiset of the
    images (a bootstrap resample) from the stored matches, as COCOeval's ``accumulate`` would on those images.

    Records holding more than COCO's 100 detections per image and class are cut to the 100 best first.
    """

    def __init__(self, records: Sequence[ImageRecord]):
        self.n_images = len(records)
        n_t = len(IOU_THRESHOLDS)
        sizes = [len(r.conf) for r in records]
        img = np.repeat(np.arange(self.n_images), sizes)
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        conf = cat([np.asarray(r.conf) for r in records], np.float64)
        cls = cat([np.asarray(r.pred_cls) for r in records], np.int64)
        tp = np.concatenate([np.asarray(r.tp, bool).reshape(-1, n_t) for r in records]) if records else \
            np.zeros((0, n_t), bool)
        gt_cls = cat([np.asarray(r.gt_cls) for r in records], np.int64)
        self.classes = np.unique(gt_cls)  # COCOeval's categories: those with ground truth
        keep = np.isin(cls, self.classes) & self._top_per_image_class(img, cls, conf)
        img, conf, cls, tp = img[keep], conf[keep], cls[keep], tp[keep]
        order = np.lexsort((-conf, np.searchsorted(self.classes, cls)))  # stable: ties stay in image order
        self.img = img[order]
        self.seg = np.searchsorted(self.classes, cls[order])  # class index of each row
        n_c = len(self.classes)
        self.start = np.searchsorted(self.seg, np.arange(n_c))  # first row of each class
        gt_img = np.repeat(np.arange(self.n_images), [len(r.gt_cls) for r in records])
        self.gt_count = np.zeros((self.n_images, n_c))  # ground-truth boxes per image and class
        np.add.at(self.gt_count, (gt_img, np.searchsorted(self.classes, gt_cls)), 1)
        # the true positives, by IoU threshold, then row: precision only rises at one, so the envelope (the running
        # maximum of precision from the right) is theirs, and only their precision is ever computed
        t_idx, rows = np.nonzero(tp[order].T)
        self.tp_row = rows
        self.tp_cls = self.seg[rows]
        group = t_idx * n_c + self.tp_cls  # (threshold, class) groups, contiguous and in order
        self.tp_group = group
        self.group_start = np.searchsorted(group, np.arange(n_t * n_c)).reshape(n_t, n_c)
        self.group_end = np.searchsorted(group, np.arange(n_t * n_c), side="right").reshape(n_t, n_c)

    @staticmethod
    def _top_per_image_class(img: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Mask of the detections among the ``MAX_DETS`` best of their image and class."""
        order = np.lexsort((-conf, cls, img))
        group = np.stack([img[order], cls[order]], 1)
        new = np.ones(len(order), bool)
        new[1:] = (group[1:] != group[:-1]).any(1)
        first = np.maximum.accumulate(np.where(new, np.arange(len(order)), 0))
        keep = np.empty(len(order), bool)
        keep[order] = np.arange(len(order)) - first < MAX_DETS
        return keep

    def class_ap(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, precision (T, C, R))``: the interpolated precision of each class with ground truth in the
        resample at each IoU threshold and recall point (its AP is the mean over R); ``weights[i]`` is how many
        times image i is in the resample (all once by default).

        As COCOeval's ``accumulate``: per class, precision and recall after each detection in score order; the
        precision envelope (the best precision at this recall or beyond) sampled at the first detection whose
        recall reaches each recall point, 0 past the last. A detection of an image drawn k times counts k times.
        """
        w = np.ones(self.n_images) if weights is None else np.asarray(weights, np.float64)
        if len(w) != self.n_images:
            raise ValueError(f"{len(w)} weights for {self.n_images} images")
        n_gt = w @ self.gt_count  # (C,) ground-truth boxes of each class in the resample
        valid = n_gt > 0
        if not valid.any():
            return self.classes[valid], np.zeros((len(IOU_THRESHOLDS), 0, len(RECALL_THRESHOLDS)))
        # detections of its class up to each row, and true positives up to each true positive (weighted, so an image
        # drawn k times counts k times; integer-valued, so the differences below are exact)
        wd = w[self.img]
        seen = np.cumsum(wd)
        prev = np.maximum(self.start - 1, 0)
        seen_before = np.where(self.start > 0, seen[prev] if len(seen) else 0.0, 0.0)  # (C,)
        tps = np.cumsum(wd[self.tp_row])
        tps_before = np.where(self.group_start > 0, tps[np.maximum(self.group_start - 1, 0)] if len(tps) else 0.0,
                              0.0)  # (T, C)
        n_seen = seen[self.tp_row] - seen_before[self.tp_cls]
        precision = np.zeros(len(tps))
        np.divide(tps - tps_before.ravel()[self.tp_group], n_seen, out=precision, where=n_seen > 0)
        envelope = np.append(self._running_max_from_right(precision), 0.0)  # a 0 for recall never reached
        # the fewest true positives whose recall (their number over the ground truth) reaches each recall point,
        # compared in floating point exactly as recall is
        n = np.where(valid, n_gt, 1.0)[:, None]
        need = np.ceil(RECALL_THRESHOLDS * n)
        for _ in range(2):
            need = np.where((need > 0) & ((need - 1) / n >= RECALL_THRESHOLDS), need - 1, need)
            need = np.where(need / n < RECALL_THRESHOLDS, need + 1, need)
        need = np.where(valid[:, None], need, 0.0)  # (C, R)
        # the first true positive of each (threshold, class) where that number is reached: searched once for each
        # distinct number (recall points that need as many as the previous one share its answer)
        query = (tps_before[:, :, None] + need[None]).ravel()
        change = np.empty(len(query), bool)
        change[0] = True
        np.not_equal(query[1:], query[:-1], out=change[1:])
        change[::len(RECALL_THRESHOLDS)] = True  # a group's first query is its own, whatever the previous group's last
        first = np.flatnonzero(change)
        group = first // len(RECALL_THRESHOLDS)  # (threshold, class) of each distinct query
        at = np.maximum(np.searchsorted(tps, query[first]), self.group_start.ravel()[group])
        at[at >= self.group_end.ravel()[group]] = len(tps)  # recall never gets there: precision 0
        q = envelope[at][np.cumsum(change) - 1].reshape(len(IOU_THRESHOLDS), len(n_gt), len(RECALL_THRESHOLDS))
        return self.classes[valid], q[:, valid]

    def _running_max_from_right(self, precision: np.ndarray) -> np.ndarray:
        """The precision envelope at each true positive: the best precision of its (threshold, class) from there on.

        One running maximum over the whole array, kept exact and within groups by accumulating integer keys:
        the group (later groups lower) above the rank of the precision.
        """
        n = len(precision)
        if not n:
            return precision
        order = np.argsort(precision, kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        offset = (self.tp_group[-1] - self.tp_group) * n
        best = np.maximum.accumulate((offset + rank)[::-1])[::-1] - offset
        return precision[order[best]]

    def map(self, weights: np.ndarray | None = None) -> tuple[float, float]:
        """(mAP50-95, mAP50) of the resample ``weights`` (see :meth:`class_ap`); 0 where it holds no labelled object.

        Averaged in COCOeval's order (IoU, recall point, class), so the identity resample gives its numbers exactly.
        """
        classes, q = self.class_ap(weights)
        if not len(classes):
            return 0.0, 0.0
        return float(np.ascontiguousarray(q.transpose(0, 2, 1)).ravel().mean()), \
            float(np.ascontiguousarray(q[0].T).ravel().mean())
