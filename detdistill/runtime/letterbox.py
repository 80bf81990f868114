"""Letterbox preprocessing, pixel-identical to ultralytics' validation and prediction paths.

Two modes:

* ``"val"`` (default): what ``YOLO(...).val()`` feeds a square model. The long side is first
  resized to ``max(new_shape)`` (each side rounded *up*, bilinear), then the image is padded
  (never enlarged again) to ``new_shape`` with the border split evenly.
* ``"predict"``: what ``YOLO(...).predict()`` does: one bilinear resize by
  ``min(H/h0, W/w0)`` (each side rounded to nearest), then the same centred padding.

Both return the padded uint8 image and a :class:`LetterboxInfo` that maps boxes back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MODES = ("val", "predict")


@dataclass(frozen=True)
class LetterboxInfo:
    """Geometry of one letterbox: original ``(h, w)``, per-axis gain ``(gy, gx)``, pad ``(left, top)``."""

    orig_shape: tuple[int, int]
    gain: tuple[float, float]
    pad: tuple[int, int]
    shape: tuple[int, int]


def _as_hw(new_shape: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(new_shape, (int, np.integer)):
        return int(new_shape), int(new_shape)
    if len(new_shape) != 2:
        raise ValueError(f"new_shape must be an int or (h, w), got {new_shape!r}")
    return int(new_shape[0]), int(new_shape[1])


def _pad_split(total: float, center: bool) -> tuple[int, int]:
    """Split ``total`` pixels of padding into (before, after) the way ultralytics does."""
    if not center:
        return 0, round(total + 0.1)
    half = total / 2
    return round(half - 0.1), round(half + 0.1)


def _fit(img: np.ndarray, new_hw: tuple[int, int], *, scaleup: bool, auto: bool, stride: int,
         center: bool, pad_value: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize by ``min`` ratio (nearest-rounded sides) and pad; return image, ratio and (left, top)."""
    h0, w0 = img.shape[:2]
    r = min(new_hw[0] / h0, new_hw[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    nw, nh = max(round(w0 * r), 1), max(round(h0 * r), 1)
    dw, dh = new_hw[1] - nw, new_hw[0] - nh
    if auto:
        dw, dh = dw % stride, dh % stride
    if (w0, h0) != (nw, nh):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = _pad_split(dh, center)
    left, right = _pad_split(dw, center)
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return img, r, (left, top)


def _conversion(img: object) -> str:
    """How to turn ``img`` into a uint8 HxWx3 BGR image, as far as its type and shape say."""
    if isinstance(img, (list, tuple)):
        return "call the detector once per image"
    if not isinstance(img, np.ndarray):
        return "decode frames with cv2.imread/VideoCapture"
    fixes = []
    if img.dtype == np.uint16:
        fixes.append("(img >> 8).astype(np.uint8) for 16-bit pixels")
    elif img.dtype == np.bool_:
        fixes.append("img.astype(np.uint8) * 255 for a mask")
    elif np.issubdtype(img.dtype, np.floating):
        # the values tell the scale: [0, 1] (e.g. img / 255) or 0-255 (e.g. img.astype(np.float32))
        unit = img.size == 0 or float(np.nanmax(img)) <= 1.0
        fixes.append("np.clip(img * 255, 0, 255).astype(np.uint8) for floats in [0, 1]" if unit else
                     "np.clip(img, 0, 255).astype(np.uint8) for floats in 0-255")
    elif img.dtype != np.uint8:
        fixes.append("np.clip(img, 0, 255).astype(np.uint8) for pixel values 0-255")
    channels = 1 if img.ndim == 2 else img.shape[-1] if img.ndim == 3 else None
    if channels in (1, 4):
        fixes.append(f"cv2.cvtColor(img, cv2.COLOR_{'GRAY' if channels == 1 else 'BGRA'}2BGR)")
    elif img.ndim == 3 and img.shape[0] == 3:
        fixes.append("img.transpose(1, 2, 0) for a CxHxW array")
    return ("convert it: " + ", then ".join(fixes)) if fixes else "decode frames with cv2.imread (no flags) or " \
        "VideoCapture, one image per call"


def check_image(img: object) -> None:
    """Refuse anything but a non-empty uint8 HxWx3 BGR image: the one check of every image the runtime takes."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        got = " ".join(str(v) for v in (type(img).__name__, getattr(img, "shape", ""), getattr(img, "dtype", "")) if v)
        raise ValueError(f"expected a uint8 HxWx3 BGR image, got {got}; {_conversion(img)}")
    if img.size == 0:
        raise ValueError(f"expected a uint8 HxWx3 BGR image, got an empty one of shape {img.shape}; pass an image "
                         "with pixels (a failed read or a crop outside the image leaves an empty array)")


def letterbox(
    img: np.ndarray,
    new_shape: int | tuple[int, int] = 640,
    *,
    mode: str = "val",
    auto: bool = False,
    stride: int = 32,
    center: bool = True,
    pad_value: int = 114,
    long_side: int | None = None,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Letterbox a uint8 HxWx3 image to ``new_shape`` (int or ``(h, w)``); see the module docstring.

    ``long_side`` (val mode) is the first-stage size, ``max(new_shape)`` by default; rectangular
    validation resizes to the model's imgsz first and then pads into a smaller ``new_shape``.
    """
    if mode not in MODES:
        raise ValueError(f"letterbox mode must be one of {MODES}, got {mode!r}")
    check_image(img)
    hw = _as_hw(new_shape)
    h0, w0 = img.shape[:2]
    if mode == "val":
        side = long_side or max(hw)
        r0 = side / max(h0, w0)
        if r0 != 1:
            w1, h1 = min(math.ceil(w0 * r0), side), min(math.ceil(h0 * r0), side)
            img = cv2.resize(img, (w1, h1), interpolation=cv2.INTER_LINEAR)
        h1, w1 = img.shape[:2]
        out, r, pad = _fit(img, hw, scaleup=False, auto=auto, stride=stride, center=center, pad_value=pad_value)
        nh, nw = max(round(h1 * r), 1), max(round(w1 * r), 1)
    else:
        out, r, pad = _fit(img, hw, scaleup=True, auto=auto, stride=stride, center=center, pad_value=pad_value)
        nh, nw = max(round(h0 * r), 1), max(round(w0 * r), 1)
    info = LetterboxInfo(orig_shape=(h0, w0), gain=(nh / h0, nw / w0), pad=pad, shape=out.shape[:2])
    return out, info


def to_input(img: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Letterboxed BGR HxWx3 uint8 -> contiguous RGB 1x3xHxW in [0, 1]."""
    x = np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)[None]).astype(dtype)
    x /= dtype(255)
    return x


def preprocess(img: np.ndarray, new_shape: int | tuple[int, int], *, mode: str = "val",
               dtype: type = np.float32, **kwargs) -> tuple[np.ndarray, LetterboxInfo]:
    """Letterbox plus :func:`to_input`: the one preprocessing used for calibration, eval and live inference."""
    boxed, info = letterbox(img, new_shape, mode=mode, **kwargs)
    return to_input(boxed, dtype), info
