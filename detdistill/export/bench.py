"""Latency per stage (preprocess, inference, postprocess) and throughput of a deployed model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..runtime import Detector
from ..data.image_lists import list_images
from ..data.images import read_usable_images

MIN_RUNS = 50  # timed runs below which medians and p90 are not stable
FRAMES = 16  # images cycled through the timed runs: the first of --images

STAGES = ("preprocess", "inference", "postprocess", "total")


@dataclass
class BenchResult:
    """Per-stage latency statistics in milliseconds, and frames per second."""

    model: str
    runs: int
    median: dict[str, float]
    p90: dict[str, float]
    fps: float
    note: str | None = None  # images of --images left out (unreadable), if any

    def table(self) -> str:
        rows = [f"{'stage':<12}{'median ms':>11}{'p90 ms':>9}"]
        rows += [f"{s:<12}{self.median[s]:>11.2f}{self.p90[s]:>9.2f}" for s in STAGES]
        return "\n".join(rows + [f"throughput  {self.fps:.1f} FPS (1 stream, batch 1)"])


def bench(
    model: str | Path | Detector,
    images: str | Path | None = None,
    *,
    runs: int = 100,
    warmup: int = 10,
    conf: float = 0.25,
    backend: str = "auto",
    **backend_kwargs,
) -> BenchResult:
    """Time ``runs`` calls (after ``warmup``) of the full Detector pipeline on real images: the first ``FRAMES``
    readable ones of ``images``, cycled (a gray frame without ``images``)."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs must be >= {MIN_RUNS} for stable medians/p90, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    det = model if isinstance(model, Detector) else Detector(model, conf=conf, backend=backend, **backend_kwargs)
    size = det.frame or (480, 640)  # (h, w): a model with in-graph preprocessing takes its camera's frames
    note = None
    if images is None:
        frames = [np.full((*size, 3), 114, np.uint8)]
    else:
        frames, note = read_usable_images(list_images(images, limit=FRAMES), "frames")  # unreadable ones left out
        if det.frame:  # as the camera delivers them: at the model's frame size, no host letterbox timed
            frames = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames]
    for i in range(warmup):
        det(frames[i % len(frames)])
    t = {s: [] for s in STAGES}
    for i in range(runs):
        det(frames[i % len(frames)])
        for s, v in det.last_timings.items():
            t[s].append(v)
        t["total"].append(sum(det.last_timings.values()))
    med = {s: float(np.median(v)) for s, v in t.items()}
    p90 = {s: float(np.percentile(v, 90)) for s, v in t.items()}
    return BenchResult(str(model if not isinstance(model, Detector) else "detector"), runs, med, p90,
                       1000.0 / float(np.mean(t["total"])), note)
