"""A video file made from still images: the demo's stand-in for a camera where there is none."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def video_from_images(images: Sequence[Path], out: Path, fps: float = 10.0) -> Path:
    """Write ``images`` (resized to the first one's size) as an mp4 at ``fps``; reuse ``out`` if it exists."""
    import cv2  # lazy: cv2 (only the demo stage needs it)

    if out.exists():
        return out
    if not images:
        raise ValueError("no images to make the demo video from")
    first = cv2.imread(str(images[0]))
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for path in images:
        frame = cv2.imread(str(path))
        if frame is not None:
            writer.write(cv2.resize(frame, (w, h)))
    writer.release()
    return out
