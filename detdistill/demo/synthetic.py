"""A generated camera-like clip for running the demo without a camera.

It pans (with a slow zoom) over the sample photos that the installed ultralytics package
ships in ``ultralytics/assets/`` (``bus.jpg``, ``zidane.jpg``), found on disk without
importing ultralytics. When they are absent it pans over a drawn scene instead.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import cv2
import numpy as np

SAMPLE_NAMES = ("bus.jpg", "zidane.jpg")


def sample_images() -> list[Path]:
    """Paths of ultralytics' sample photos, located by package spec (no import)."""
    try:
        spec = importlib.util.find_spec("ultralytics")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for root in spec.submodule_search_locations:
        for name in SAMPLE_NAMES:
            path = Path(root) / "assets" / name
            if path.is_file():
                found.append(path)
    return found


def _drawn_scene(height: int) -> np.ndarray:
    """A fallback scene: sky, road and a few coloured blocks."""
    width = height * 3
    scene = np.full((height, width, 3), (200, 170, 120), np.uint8)
    scene[height // 2:] = (90, 90, 90)
    rng = np.random.default_rng(0)
    for _ in range(8):
        x, y = int(rng.integers(0, width - 120)), int(rng.integers(height // 3, height - 100))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(scene, (x, y), (x + 110, y + 80), color, -1)
    return scene


def panorama(height: int = 480) -> np.ndarray:
    """The sample photos scaled to ``height`` and placed side by side (bus first)."""
    tiles = []
    for path in sample_images():
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        scale = height / image.shape[0]
        tiles.append(cv2.resize(image, (max(1, round(image.shape[1] * scale)), height),
                                interpolation=cv2.INTER_AREA))
    return np.hstack(tiles) if tiles else _drawn_scene(height)


class SyntheticCamera:
    """A ``Grabber`` yielding ``frames`` BGR frames of a pan over ``panorama()``.

    The view moves left to right and back (so the clip loops smoothly), zooms in and out a
    little, and carries a fixed sensor-like noise pattern. With ``realtime`` it paces itself
    to ``fps`` like a camera; otherwise it returns frames as fast as they are asked for.
    Frame 0 shows the whole bus.
    """

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float = 30.0, frames: int = 300,
                 realtime: bool = True, noise: float = 4.0) -> None:
        if frames < 1 or not fps > 0 or min(size) < 1:  # fps 0 would divide by zero in read()
            raise ValueError(f"synthetic clip: frames must be >= 1, fps > 0 and the size at least 1x1, got "
                             f"frames={frames}, fps={fps}, size={size[0]}x{size[1]}")
        self.width, self.height = size
        self.fps = float(fps)
        self.frames = frames
        self.realtime = realtime
        self.scene = panorama(self.height)
        if self.scene.shape[1] < self.width:
            repeats = math.ceil(self.width / self.scene.shape[1]) + 1
            self.scene = np.hstack([self.scene] * repeats)
        rng = np.random.default_rng(1)
        grain = rng.normal(0, noise, (self.height, self.width, 3))
        self.grain_up = np.clip(grain, 0, 255).astype(np.uint8)      # saturating add ...
        self.grain_down = np.clip(-grain, 0, 255).astype(np.uint8)   # ... and subtract
        self.position = 0
        self.ended = False
        self.description = f"synthetic {self.width}x{self.height}@{self.fps:g} ({frames} frames)"
        self._t0: float | None = None

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` of the clip (deterministic)."""
        phase = (i % max(1, self.frames)) / max(1, self.frames)
        pan = 0.5 - 0.5 * math.cos(2 * math.pi * phase)            # 0 -> 1 -> 0
        zoom = 1.0 + 0.12 * math.sin(2 * math.pi * phase) ** 2      # 1.0 .. 1.12
        view_w, view_h = self.width / zoom, self.height / zoom
        x0 = pan * (self.scene.shape[1] - view_w)
        y0 = (self.height - view_h) / 2
        # affine crop+scale in one warp: output pixel (u, v) <- scene (x0 + u/zoom, y0 + v/zoom)
        matrix = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom]], np.float32)
        view = cv2.warpAffine(self.scene, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
        return cv2.subtract(cv2.add(view, self.grain_up), self.grain_down)

    def read(self) -> np.ndarray | None:
        if self.position >= self.frames:
            self.ended = True
            return None
        if self.realtime:
            if self._t0 is None:
                self._t0 = time.monotonic()
            delay = self._t0 + self.position / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        image = self.frame(self.position)
        self.position += 1
        return image

    def close(self) -> None:
        self.position = self.frames


def write_clip(path: str | Path, frames: int = 60, size: tuple[int, int] = (640, 480), fps: float = 30.0) -> Path:
    """Write the synthetic clip to a video file (``.mp4`` with mp4v, ``.avi`` with MJPG)."""
    path = Path(path)
    fourcc = cv2.VideoWriter.fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path}")
    camera = SyntheticCamera(size, fps=fps, frames=frames, realtime=False)
    try:
        for i in range(frames):
            writer.write(camera.frame(i))
    finally:
        writer.release()
    return path
