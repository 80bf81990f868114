"""Training-time road-domain augmentation: named presets of photometric corruptions for ultralytics' training data.

A preset leaves an image clean or applies one corruption of :mod:`detdistill.data.corruptions` (fog, rain, snow,
sun glare, low light, motion blur, sensor noise, JPEG) at a training severity, all drawn from one seed. The pixels
come from the evaluation code, so training sees the same kinds of corruption that ``detdistill eval --corrupt``
measures (ImageNet-C, Hendrycks and Dietterich, ICLR 2019; COCO-C, Michaelis et al., arXiv:1907.07484, 2019);
``road`` trains at severities 1-3 and leaves 4-5 as a stronger shift than training saw; ``road-light`` corrupts a
quarter of the images at severity 1 or 2; ``road-heavy`` corrupts more images, up to severity 4.

:class:`PresetTransform` is an ultralytics dataset transform that runs after ultralytics' own pipeline (mosaic,
affine, flips, then ``Format``). The corruptions are photometric and keep image content in place, so boxes and
classes stay as they are. With ``keep_clean`` it also keeps the uncorrupted image as ``img_clean`` (for a teacher
that sees the clean image while the student sees the corrupted one). The seed of each image is drawn from Python's
``random``, which ultralytics seeds from the trainer's ``seed`` in the main process and in every dataloader worker,
as it does for its own augmentations: a run repeats with the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .corruptions import INSTALL_HINT, CORRUPTIONS, CorruptionError, albumentations, corrupt


class AugmentationError(ValueError):
    """An unknown augmentation preset, albumentations missing, or data a preset cannot take."""


@dataclass(frozen=True)
class Preset:
    """A mix of corruptions: ``clean`` is the probability of an untouched image; otherwise one corruption is drawn
    by ``weights`` and its severity uniformly from ``severities``."""

    description: str
    clean: float
    weights: tuple[tuple[str, float], ...]
    severities: tuple[int, ...]

    def draw(self, seed: int) -> tuple[str, int] | None:
        """The ``(corruption, severity)`` for an image with this seed, or None to leave it clean."""
        rng = random.Random(seed)
        if rng.random() < self.clean:
            return None
        names, weights = zip(*self.weights)
        return rng.choices(names, weights)[0], rng.choice(self.severities)

    def apply(self, image_bgr: np.ndarray, seed: int) -> tuple[np.ndarray, tuple[str, int] | None]:
        """``image_bgr`` (H, W, 3) uint8 under this preset with this seed, and what was applied (None: clean)."""
        choice = self.draw(seed)
        if choice is None:
            return image_bgr, None
        return corrupt(image_bgr, choice[0], choice[1], seed), choice


ROAD_CORRUPTIONS = ("fog", "rain", "snow", "glare", "dark", "motion_blur", "noise", "jpeg")

PRESETS: dict[str, Preset] = {
    "road": Preset(
        "half the images clean; the other half one of fog, rain, snow, sun glare, low light (dark), motion blur, "
        "sensor noise or JPEG compression, equally likely, at severity 1, 2 or 3 of 5",
        clean=0.5,
        weights=tuple((name, 1.0) for name in ROAD_CORRUPTIONS),
        severities=(1, 2, 3),
    ),
    "road-light": Preset(
        "three quarters of the images clean; the others one of the same eight corruptions at severity 1 or 2 of 5",
        clean=0.75,
        weights=tuple((name, 1.0) for name in ROAD_CORRUPTIONS),
        severities=(1, 2),
    ),
    "road-heavy": Preset(
        "a fifth of the images clean; the others one of the same eight corruptions at severity 1, 2, 3 or 4 of 5",
        clean=0.2,
        weights=tuple((name, 1.0) for name in ROAD_CORRUPTIONS),
        severities=(1, 2, 3, 4),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, after checking that albumentations can be imported.

    Raises :class:`AugmentationError` naming the fix for an unknown name or a missing albumentations.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in PRESETS:
        raise AugmentationError(f"unknown augmentation preset {name!r}: choose from {', '.join(PRESETS)} "
                                "(or leave augmentation off)")
    try:
        albumentations()
    except CorruptionError as e:
        raise AugmentationError(f"augmentation preset {name!r} needs albumentations, which is not installed: "
                                f"{INSTALL_HINT}") from e
    return PRESETS[key]


def check_augment(augment: str | None, teacher_clean: bool = False) -> str | None:
    """The preset's name as the presets spell it (``ROAD`` is ``road``); raise :class:`AugmentationError` for a preset
    that cannot be used, or ``teacher_clean`` without a preset."""
    if augment is not None:
        get_preset(augment)
        return augment.strip().lower()
    if teacher_clean:
        raise AugmentationError("teacher_clean needs an augmentation preset (--augment road; in a pipeline recipe, "
                                "distill.augment: road): without one the teacher and the student see the same image")
    return None


class PresetTransform:
    """Ultralytics dataset transform: corrupts ``labels["img"]`` (the ``Format``-ed (C, H, W) uint8 tensor) under a
    preset; with ``keep_clean`` the untouched image goes to ``labels["img_clean"]``.

    Records what it applied in ``labels["corruption"]`` (``"name:severity"``, or ``"clean"``).
    """

    def __init__(self, preset: str, keep_clean: bool = False):
        self.name = preset
        self.preset = get_preset(preset)
        self.keep_clean = keep_clean

    def __repr__(self) -> str:
        return f"{type(self).__name__}(preset={self.name!r}, keep_clean={self.keep_clean})"

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        img = labels["img"]
        if self.keep_clean:
            labels["img_clean"] = img
        seed = random.getrandbits(32)
        # Format gives RGB (or BGR with ultralytics' `bgr` probability); corrupt() takes BGR: flip in and out
        hwc = img.numpy().transpose(1, 2, 0)[:, :, ::-1]
        out, choice = self.preset.apply(hwc, seed)
        if choice is not None:
            labels["img"] = torch.from_numpy(np.ascontiguousarray(out[:, :, ::-1].transpose(2, 0, 1)))
        labels["corruption"] = "clean" if choice is None else f"{choice[0]}:{choice[1]}"
        return labels


def _parts(dataset: Any) -> Iterable[Any]:
    """The datasets whose transforms a training dataset applies (itself, or the parts of a concatenation)."""
    return getattr(dataset, "datasets", None) or [dataset]


def attach(dataset: Any, preset: str, keep_clean: bool = False) -> None:
    """Append a :class:`PresetTransform` to the end of ``dataset.transforms`` (once: a second call changes nothing).

    Call it again after ultralytics rebuilds the transforms (``close_mosaic``).
    """
    for part in _parts(dataset):
        channels = int((getattr(part, "data", None) or {}).get("channels", 3))
        if channels != 3:
            raise AugmentationError(f"augmentation preset {preset!r} corrupts 3-channel colour images; this dataset "
                                    f"has {channels}-channel images: train it without --augment")
        transforms = part.transforms.transforms
        if not any(isinstance(t, PresetTransform) for t in transforms):
            part.transforms.append(PresetTransform(preset, keep_clean))


def attached(dataset: Any) -> list[PresetTransform]:
    """The preset transforms that ``dataset`` applies (none for validation data)."""
    return [t for part in _parts(dataset) for t in part.transforms.transforms if isinstance(t, PresetTransform)]
