"""How sure a difference in mAP is: a paired bootstrap over test images.

Two methods are trained on the same seeds and scored on the same images. Each bootstrap sample draws
the images with replacement (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993), recomputes
every run's mAP50-95 on that sample, and takes the difference of the two methods' means over seeds.
The percentile interval of those differences says how much the gain could move with other images of
the same kind; a gain is claimed only where the interval excludes zero.

Copies of one photo (a dataset export that holds each photo twice) are drawn together, as one cluster: counting
them as independent images would narrow the interval by about the square root of the number of copies (a cluster
bootstrap; Davison and Hinkley, *Bootstrap Methods and their Application*, 1997, section 3.8). The photos come
from the records (the evaluator names each image's photo) or from the caller (``groups``); where neither names
them (records built from in-memory detections, or stored without photos), each image is drawn alone, and the
interval says so.

Boxes are matched once per image (COCO's protocol, by :mod:`detdistill.export.coco_metrics`); a sample only
re-accumulates precision and recall from the stored matches of the images it drew, each counted as often
as it was drawn (:class:`~detdistill.export.coco_metrics.MatchTable`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .coco_metrics import ImageRecord, MatchTable


@dataclass
class Gain:
    """Mean mAP50-95 difference (a - b) over paired seeds, with its bootstrap interval."""

    diff: float
    low: float
    high: float
    per_seed: list[float]
    confidence: float
    by_photo: bool = True  # False: the images' photos were unknown and each image was drawn alone

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        mark = "" if self.significant else " (interval holds 0: no claim)"
        if not self.by_photo:
            mark += " (image-level: the photos are unknown, so copies of one photo count as independent)"
        return (f"{100 * self.diff:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]{mark}")


def record_photos(runs: Sequence[list[ImageRecord]]) -> list[str] | None:
    """The photo of each image, from the runs' records; None where no run knows them all.

    Raises ValueError where two runs name different photos: they were not scored on the same images."""
    known = [[r.photo for r in run] for run in runs if all(r.photo is not None for r in run)]
    for photos in known[1:]:
        if photos != known[0]:
            first = next(i for i, (x, y) in enumerate(zip(known[0], photos)) if x != y)
            raise ValueError(f"every run must be scored on the same images, in the same order: image {first} is "
                             f"photo {known[0][first]!r} in one run and {photos[first]!r} in another")
    return known[0] if known else None


def paired_gain(a: Sequence[list[ImageRecord]], b: Sequence[list[ImageRecord]], *,
                groups: Sequence[Hashable] | None = None, samples: int = 1000, confidence: float = 0.95,
                seed: int = 0) -> Gain:
    """Bootstrap the mean over seeds of mAP(a_s) - mAP(b_s).

    ``a[s]`` and ``b[s]`` are the per-image records of seed ``s`` on the same images, in the same order.
    A sample draws photos, each with all its images. ``groups[i]`` names the photo image ``i`` was made from
    (:func:`detdistill.data.splits.photo_groups`); None: the photos the records name, or, where they name none,
    every image its own photo (``Gain.by_photo`` False).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired seeds needed: {len(a)} runs against {len(b)}")
    n = len(a[0])
    if any(len(r) != n for r in (*a, *b)):
        raise ValueError("every run must be scored on the same images")
    by_photo = True
    if groups is None:
        groups = record_photos([*a, *b])
        by_photo = groups is not None
    if groups is None:
        photo_of, n_photos = np.arange(n), n
    else:
        if len(groups) != n:
            raise ValueError(f"groups names {len(groups)} images, the runs were scored on {n}")
        names = {g: i for i, g in enumerate(dict.fromkeys(groups))}  # photo -> index, in order of first image
        photo_of, n_photos = np.array([names[g] for g in groups]), len(names)
    tables = [(MatchTable(x), MatchTable(y)) for x, y in zip(a, b)]
    per_seed = [ta.map()[0] - tb.map()[0] for ta, tb in tables]
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples)
    for i in range(samples):
        drawn = np.bincount(rng.integers(0, n_photos, n_photos), minlength=n_photos)  # times each photo is drawn
        weights = drawn[photo_of]  # an image counts as often as its photo
        diffs[i] = np.mean([ta.map(weights)[0] - tb.map(weights)[0] for ta, tb in tables])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Gain(float(np.mean(per_seed)), float(low), float(high), per_seed, confidence, by_photo)
