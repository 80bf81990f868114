"""How sure a difference in mAP is: a paired bootstrap over test images.

Two methods are trained on the same seeds and scored on the same images. Each bootstrap sample draws
the images with replacement (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993), recomputes
every run's mAP50-95 on that sample, and takes the difference of the two methods' means over seeds.
The percentile interval of those differences says how much the gain could move with other images of
the same kind; a gain is claimed only where the interval excludes zero.

Copies of one photo (a dataset export that holds each photo twice) are drawn together, as one cluster, when the
caller names each image's photo (``groups``): counting them as independent images would narrow the interval by
about the square root of the number of copies (a cluster bootstrap; Davison and Hinkley, *Bootstrap Methods and
their Application*, 1997, section 3.8).

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

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        mark = "" if self.significant else " (interval holds 0: no claim)"
        return (f"{100 * self.diff:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]{mark}")


def paired_gain(a: Sequence[list[ImageRecord]], b: Sequence[list[ImageRecord]], *,
                groups: Sequence[Hashable] | None = None, samples: int = 1000, confidence: float = 0.95,
                seed: int = 0) -> Gain:
    """Bootstrap the mean over seeds of mAP(a_s) - mAP(b_s).

    ``a[s]`` and ``b[s]`` are the per-image records of seed ``s`` on the same images, in the same order.
    ``groups[i]`` names the photo image ``i`` was made from (:func:`detdistill.data.splits.photo_groups`); a
    sample draws photos, each with all its images. None: every image is its own photo.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired seeds needed: {len(a)} runs against {len(b)}")
    n = len(a[0])
    if any(len(r) != n for r in (*a, *b)):
        raise ValueError("every run must be scored on the same images")
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
    return Gain(float(np.mean(per_seed)), float(low), float(high), per_seed, confidence)
