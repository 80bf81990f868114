"""A video file made from still images: the demo's stand-in for a camera where there is none."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .. import atomic
from ..hashing import stat_key


def images_stamp(images: Sequence[Path], fps: float) -> str:
    """What a video of ``images`` at ``fps`` is made of: each image's path, size and modification time, in order."""
    return stat_key(images, f"fps {fps}")


def stamp_file(out: Path) -> Path:
    """The file beside ``out`` that records which images it was made of."""
    return out.with_name(f"{out.name}.json")


def video_from_images(images: Sequence[Path], out: Path, fps: float = 10.0) -> Path:
    """Write ``images`` (resized to the first one's size) as an mp4 at ``fps``. An ``out`` made of the same images
    (same paths, sizes, modification times and count) at the same ``fps`` is reused; any other is replaced. The video
    is written under a temporary name and moved into place, so a half-written one is never reused."""
    import cv2  # lazy: cv2 (only the demo stage needs it)

    if not images:
        raise ValueError("no images to make the demo video from")
    stamp, record = images_stamp(images, fps), stamp_file(out)
    if out.is_file() and record.is_file() and _recorded(record) == {"images": len(images), "stamp": stamp}:
        return out
    first = cv2.imread(str(images[0]))
    if first is None:
        raise ValueError(f"cannot read {images[0]} as an image, the first frame of the demo video: replace or remove "
                         "it from the validation split")
    h, w = first.shape[:2]
    record.unlink(missing_ok=True)  # from here on, `out` may not be the video the record describes
    tmp = atomic.temp_path(out)
    tmp = tmp.with_name(tmp.name + out.suffix)  # OpenCV picks the container by the suffix
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write an mp4 (mp4v) video in {out.parent}: check that the folder is "
                          "writable and that this OpenCV build can encode video")
        for path in images:
            frame = cv2.imread(str(path))
            if frame is not None:
                writer.write(cv2.resize(frame, (w, h)))
        writer.release()
        atomic.commit(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    atomic.write_text(record, json.dumps({"images": len(images), "stamp": stamp}))
    return out


def _recorded(record: Path) -> dict | None:
    """The record beside a video, or None where it is unreadable."""
    try:
        return json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
