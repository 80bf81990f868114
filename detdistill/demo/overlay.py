"""Draw detections and a status panel (FPS, latency, per-stage ms) onto a BGR frame."""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX

# 20 well separated BGR colours, one per class id (cycled).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
)
STAGE_LABELS = {"capture": "capture", "preprocess": "preproc", "inference": "infer",
                "postprocess": "postproc", "draw": "draw", "output": "output"}


def class_color(class_id: int) -> tuple[int, int, int]:
    """Stable BGR colour of a class id."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _font_scale(image: np.ndarray) -> float:
    """Text size that stays readable from 240p to 4K (0.5 at 480p)."""
    return float(np.clip(min(image.shape[:2]) / 960, 0.4, 1.5))


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    names: dict[int, str] | None = None) -> np.ndarray:
    """Draw each box with its class name and score, in place; returns ``image``."""
    names = names or {}
    font_scale = _font_scale(image)
    thick = max(1, round(min(image.shape[:2]) / 360))
    text_thick = max(1, round(font_scale * 1.5) - 1)
    h, w = image.shape[:2]
    corners = np.rint(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).astype(np.int64)   # half to even, as round()
    corners[:, 0::2] = corners[:, 0::2].clip(0, w - 1)
    corners[:, 1::2] = corners[:, 1::2].clip(0, h - 1)
    for (x1, y1, x2, y2), score, cls in zip(corners.tolist(), np.asarray(scores).tolist(),
                                            np.asarray(class_ids).tolist()):
        color = class_color(int(cls))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thick)
        label = f"{names.get(int(cls), str(int(cls)))} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(label, FONT, font_scale, text_thick)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(image, (x1, ty - th - base), (x1 + tw + 2, ty + 1), color, -1)
        text_color = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(image, label, (x1 + 1, ty - base + 1), FONT, font_scale, text_color, text_thick, cv2.LINE_AA)
    return image


def hud_lines(fps: float, latency_ms: float, stage_ms: dict[str, float], dropped: int,
              detections: int) -> list[str]:
    """The status panel's text: FPS, latency, objects, dropped frames, then ms per stage (two a line)."""
    lines = [f"{fps:5.1f} FPS  latency {latency_ms:5.1f} ms",
             f"objects {detections}  dropped {dropped}"]
    cells = [f"{STAGE_LABELS.get(k, k)} {v:5.1f}" for k, v in stage_ms.items()]
    lines += ["  ".join(cells[i:i + 2]) + " ms" for i in range(0, len(cells), 2)]
    return lines


def draw_hud(image: np.ndarray, lines: list[str], origin: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Draw ``lines`` on a darkened panel at the top-left corner, in place; returns ``image``."""
    if not lines:
        return image
    scale = _font_scale(image) * 0.9
    thick = max(1, round(scale * 1.5) - 1)
    sizes = [cv2.getTextSize(line, FONT, scale, thick)[0] for line in lines]
    line_h = max(h for _, h in sizes) + int(10 * scale) + 2
    pad = 6
    x0, y0 = origin
    x1 = min(image.shape[1], x0 + max(w for w, _ in sizes) + 2 * pad)
    y1 = min(image.shape[0], y0 + line_h * len(lines) + 2 * pad)
    roi = image[y0:y1, x0:x1]
    cv2.convertScaleAbs(roi, dst=roi, alpha=0.35)     # darken the panel so text reads on any scene
    for i, line in enumerate(lines):
        y = y0 + pad + (i + 1) * line_h - 4
        cv2.putText(image, line, (x0 + pad, y), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image
