"""Seeded image corruptions for robustness evaluation (fog, rain, snow, glare, dark, motion blur, noise, JPEG).

The protocol is ImageNet-C's (Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019) as carried to detection by COCO-C (Michaelis et al.,
"Benchmarking Robustness in Object Detection: Autonomous Driving when Winter is Coming", arXiv:1907.07484,
2019): every corruption has 5 severities, each a fixed setting of its parameters, and a model's robustness
is its accuracy under each corruption averaged over the 5 severities (mPC when also averaged over the
corruptions; rPC = mPC / clean accuracy). The pixels come from albumentations, imported only when an image
is corrupted (``pip install 'detdistill[robust]'``). None of the corruptions moves image content, so the
labels stay valid. The output depends only on the image, the corruption, the severity and the seed
(:func:`image_seed` derives one from an image's file name).
"""

from __future__ import annotations

import numbers
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)
INSTALL_HINT = ("pip install 'detdistill[robust]' (it brings opencv-python-headless, which hides a GUI or GStreamer "
                "OpenCV, the demo's window or a Jetson's camera: there, pip install --no-deps albumentations==2.0.8 "
                "albucore==0.0.24 simsimd stringzilla)")


class CorruptionError(ValueError):
    """A bad corruption spec, or albumentations missing."""


@dataclass(frozen=True)
class Corruption:
    """One corruption: what its severity raises, its setting at severities 1-5, and how a setting becomes
    albumentations transforms.

    ``transforms(A, level, side)`` gets the albumentations module, the level's setting and the image's
    shorter side in pixels (sizes given as a fraction of it keep their meaning at any resolution).
    ``random``: whether the seed matters (drop and flake positions, noise, blur angle, fog patches).
    """

    meaning: str
    levels: tuple[Any, Any, Any, Any, Any]
    transforms: Callable[[ModuleType, Any, int], list]
    random: bool = True


def _odd(n: float) -> int:
    """The odd integer >= 3 nearest to ``n`` (kernel sizes)."""
    return max(3, int(round(n)) // 2 * 2 + 1)


def _snow(A: ModuleType, level: tuple, side: int) -> list:
    snow_point, brightness, flakes, size = level
    length = max(2, round(size * side))
    return [
        A.RandomSnow(snow_point_range=(snow_point, snow_point), brightness_coeff=brightness, method="bleach", p=1),
        # falling flakes: short, wide, white, unblurred streaks (RandomSnow's texture method corrupts hues)
        A.RandomRain(rain_type=flakes, drop_length=length, drop_width=max(1, length // 2), drop_color=(255, 255, 255),
                     blur_value=3, brightness_coefficient=1.0, slant_range=(-3, 3), p=1),
    ]


CORRUPTIONS: dict[str, Corruption] = {
    "fog": Corruption(
        "fog density and patch opacity (RandomFog fog_coef, alpha_coef)",
        ((0.3, 0.08), (0.45, 0.1), (0.6, 0.12), (0.75, 0.14), (0.9, 0.16)),
        lambda A, v, side: [A.RandomFog(fog_coef_range=(v[0], v[0]), alpha_coef=v[1], p=1)],
    ),
    "rain": Corruption(
        "drops per image (RandomRain drizzle, default, heavy, torrential) and darkening (brightness x0.9-0.6)",
        (("drizzle", 0.9), ("default", 0.85), ("heavy", 0.8), ("torrential", 0.75), ("torrential", 0.6)),
        lambda A, v, side: [A.RandomRain(rain_type=v[0], brightness_coefficient=v[1], p=1)],
    ),
    "snow": Corruption(
        "snow cover (RandomSnow bleach, snow_point 0.05-0.2) and falling flakes (more and larger)",
        ((0.05, 1.2, "drizzle", 0.01), (0.08, 1.4, "default", 0.011), (0.12, 1.6, "heavy", 0.0125),
         (0.16, 1.8, "heavy", 0.014), (0.2, 2.0, "torrential", 0.0167)),
        _snow,
    ),
    "glare": Corruption(
        "sun glare radius, 0.15-0.7 of the shorter side (RandomSunFlare, physics_based, in the upper half)",
        (0.15, 0.25, 0.35, 0.5, 0.7),
        lambda A, v, side: [A.RandomSunFlare(src_radius=max(2, round(v * side)), method="physics_based", p=1)],
    ),
    "dark": Corruption(
        "night-like under-exposure: gamma 1.1-2.2 (RandomGamma), then brightness x0.85-0.3",
        ((1.1, 0.85), (1.3, 0.7), (1.5, 0.55), (1.8, 0.42), (2.2, 0.3)),
        lambda A, v, side: [A.RandomGamma(gamma_limit=(100 * v[0], 100 * v[0]), p=1),
                            A.MultiplicativeNoise(multiplier=(v[1], v[1]), per_channel=False, elementwise=False, p=1)],
        random=False,
    ),
    "motion_blur": Corruption(
        "centred linear blur of random angle, kernel 1.5%-7% of the shorter side (MotionBlur)",
        (0.015, 0.025, 0.035, 0.05, 0.07),
        lambda A, v, side: [A.MotionBlur(blur_limit=(_odd(v * side),) * 2, allow_shifted=False,
                                         direction_range=(0.0, 0.0), p=1)],
    ),
    "noise": Corruption(
        "Gaussian noise std 0.08-0.38 of the pixel range, ImageNet-C's values (GaussNoise)",
        (0.08, 0.12, 0.18, 0.26, 0.38),
        lambda A, v, side: [A.GaussNoise(std_range=(v, v), p=1)],
    ),
    "jpeg": Corruption(
        "JPEG quality 25, 18, 15, 10, 7, ImageNet-C's values (ImageCompression)",
        (25, 18, 15, 10, 7),
        lambda A, v, side: [A.ImageCompression(quality_range=(v, v), p=1)],
        random=False,
    ),
}


def albumentations() -> ModuleType:
    """Import albumentations (without its online version check), or say how to install it."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A  # lazy: albumentations (optional: the robust extra)
    except ImportError as e:
        raise CorruptionError(f"image corruptions need albumentations, which is not installed ({e}): "
                              f"{INSTALL_HINT}") from e
    return A


def check(name: str, severity: int | None) -> None:
    """Raise :class:`CorruptionError` for an unknown corruption or a severity outside 1-5 (None: all five)."""
    if name not in CORRUPTIONS:
        raise CorruptionError(f"unknown corruption {name!r}: choose from {', '.join(CORRUPTIONS)}")
    if severity is not None and not _is_severity(severity):
        raise CorruptionError(f"corruption {name!r}: severity must be an integer from 1 (mildest) to 5 (strongest), "
                              f"got {severity!r}")


def _is_severity(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value in SEVERITIES


def parse_spec(spec: str | Sequence[str]) -> list[tuple[str, int | None]]:
    """``"fog,rain:3,noise"`` -> ``[("fog", None), ("rain", 3), ("noise", None)]``; ``all`` names every corruption.

    A severity of None stands for the mean over severities 1-5. Repeats are dropped; a name given both alone and
    at a severity is refused (the mean over corruptions would count it twice).
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, int | None]] = []
    alone_by_all = False  # 'all' (no severity) named each corruption alone
    for raw in (s.strip().lower() for s in items):
        if not raw:
            continue
        name, sep, sev = raw.partition(":")
        name = name.strip().replace("-", "_")
        if sep and not sev.strip().isdigit():
            raise CorruptionError(f"corruption {raw!r}: the severity after ':' must be an integer from 1 to 5, "
                                  f"e.g. '{name}:3'")
        severity = int(sev) if sep else None
        names = list(CORRUPTIONS) if name == "all" else [name]
        alone_by_all |= name == "all" and severity is None
        if severity is not None and not _is_severity(severity):
            raise CorruptionError(f"corruption {name!r}: severity must be an integer from 1 (mildest) to 5 "
                                  f"(strongest), got {severity}; leave it out (e.g. '{name}') for the mean over all "
                                  "five")
        for n in names:
            check(n, severity)
            if (n, severity) not in out:
                out.append((n, severity))
    for name in (n for n, sev in out if sev is None):
        if twice := [f"{n}:{sev}" for n, sev in out if n == name and sev]:
            given = "'all' names it alone" if alone_by_all else "it is given alone"
            raise CorruptionError(f"corruption {name!r}: {given}, which scores it at every severity 1-5, and it is "
                                  f"given again as {', '.join(twice)}: its mean would be counted twice; give either "
                                  f"'{name}' or {', '.join(repr(t) for t in twice)}")
    if not out:
        raise CorruptionError(f"no corruption given: pass names from {', '.join(CORRUPTIONS)} (or 'all'), "
                              "each optionally with ':severity' (1-5), separated by commas, e.g. 'fog,noise:3'")
    return out


def one_condition(corrupt: str | Sequence[Any]) -> tuple[str, int]:
    """One corruption at one severity, given as ``"fog:3"`` or ``("fog", 3)``; a :class:`CorruptionError` naming
    the accepted forms for anything else (a list of several, a name without a severity)."""
    if not isinstance(corrupt, str) and isinstance(corrupt, Sequence) and len(corrupt) == 2 \
            and isinstance(corrupt[0], str) and ":" not in corrupt[0]:
        corrupt = f"{corrupt[0]}:{corrupt[1]}"  # read as the CLI reads it: 'Motion-Blur' is motion_blur
    if isinstance(corrupt, str):
        parsed = parse_spec(corrupt)
        if len(parsed) == 1 and parsed[0][1] is not None:
            require(*parsed[0])  # albumentations too, before any model loads
            return parsed[0][0], parsed[0][1]
    raise CorruptionError(f"corrupt={corrupt!r}: give one corruption at one severity, as 'fog:3' or ('fog', 3); for "
                          "several, or the mean over severities 1-5, score each condition in turn (the CLI's "
                          "`eval --corrupt fog,rain:3` does)")


def image_seed(path: str | Path) -> int:
    """A stable seed from an image's file name (the same image gets the same corruption in any folder or run)."""
    return zlib.crc32(Path(path).name.encode())


def require(name: str, severity: int) -> ModuleType:
    """Check one ``(name, severity)`` to apply (a known corruption, a severity 1-5) and return albumentations."""
    check(name, severity)
    if severity is None:
        raise CorruptionError(f"corruption {name!r}: one image is corrupted at one severity (1-5); average the "
                              "scores of severities 1-5 for the mean")
    return albumentations()


MIN_SIDE = 4  # the smallest image side every corruption takes (rain and snow need 3, glare's radius 2)


def corrupt(image_bgr: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``image_bgr`` (H, W, 3) uint8 under corruption ``name`` at ``severity`` (1-5), seeded: same inputs, same pixels."""
    A = require(name, severity)
    if not isinstance(seed, numbers.Integral):
        raise CorruptionError(f"corrupt() takes an integer seed (e.g. image_seed(path)), got {seed!r}")
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise CorruptionError(f"corrupt() takes a (H, W, 3) uint8 BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    if min(image_bgr.shape[:2]) < MIN_SIDE:
        raise CorruptionError(f"a {image_bgr.shape[1]}x{image_bgr.shape[0]} image is too small to corrupt: the "
                              f"corruptions need at least {MIN_SIDE} pixels a side; leave such images out")
    c = CORRUPTIONS[name]
    transforms = c.transforms(A, c.levels[severity - 1], min(image_bgr.shape[:2]))
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])  # albumentations' colour transforms assume RGB
    out = A.Compose(transforms, seed=int(seed) % 2**32)(image=rgb)["image"]
    return np.ascontiguousarray(out[:, :, ::-1])
