"""Write the annotated frames to a video file and the detections to a JSON Lines file.

Both files are closed by ``close()``, which the demo loop always reaches (Ctrl-C and
SIGTERM included): an MP4 is only playable once its index has been written at close.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class VideoRecorder:
    """Annotated frames to ``path`` (``.mp4``/``.mov``/``.mkv``: MPEG-4, ``.avi``: MJPEG).

    Encoding runs in a background thread (a bounded queue; ``write`` blocks only when the
    encoder falls ``queue_size`` frames behind, so no frame is ever lost). The writer opens
    on the first frame: its size fixes the video size, later frames of another size (e.g.
    after a camera reconnect) are resized to it. ``write`` must not be given an array that
    the caller modifies afterwards.
    """

    def __init__(self, path: str | Path, fps: float = 30.0, queue_size: int = 32) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC_BY_SUFFIX:
            raise ValueError(f"--record: use one of {', '.join(sorted(FOURCC_BY_SUFFIX))}, not {self.path.name!r}")
        self.codec = FOURCC_BY_SUFFIX[suffix]
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _open(self, image: np.ndarray) -> cv2.VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (image.shape[1], image.shape[0])
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*self.codec), self.fps, self.size)
        if not writer.isOpened():
            raise RuntimeError(f"cannot open {self.path} for writing (codec {self.codec})")
        return writer

    def _encode(self, writer: cv2.VideoWriter) -> None:
        try:
            while (image := self._queue.get()) is not None:
                if self._error is None:
                    if (image.shape[1], image.shape[0]) != self.size:
                        image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
                    writer.write(image)
        except BaseException as exc:  # reported by the next write() or close()
            self._error = exc
        finally:
            writer.release()     # writes the MP4 index: the file is playable from here on

    def write(self, image: np.ndarray) -> None:
        """Queue one BGR frame for encoding."""
        if self._error is not None:
            raise RuntimeError(f"recording {self.path} failed: {self._error}")
        if self._thread is None:
            writer = self._open(image)
            self._thread = threading.Thread(target=self._encode, args=(writer,), name="recorder", daemon=True)
            self._thread.start()
        self._queue.put(image)
        self.frames += 1

    def close(self) -> None:
        """Encode what is queued and finalise the file (idempotent)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise RuntimeError(f"recording {self.path} failed: {self._error}")


class DetectionLog:
    """One JSON object per processed frame, one per line, flushed as it goes.

    ``{"frame": 0, "source_index": 0, "time_s": 0.03, "width": 640, "height": 480,
    "detections": [{"class_id": 5, "name": "bus", "score": 0.87, "box": [x1, y1, x2, y2]}],
    "source": 0}`` (box in frame pixels; ``frame`` counts the frames of that ``source``, the
    number of the ``--source`` it came from, which is only there when the caller passes it).
    """

    def __init__(self, path: str | Path, names: dict[int, str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.names = names or {}
        self.frames = 0
        self._file: TextIO | None = self.path.open("w", encoding="utf-8")

    def write(self, frame: int, source_index: int, time_s: float, shape: tuple[int, ...],
              boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, source: int | None = None) -> None:
        detections = [
            {"class_id": int(c), "name": self.names.get(int(c), str(int(c))), "score": round(float(s), 4),
             "box": [round(float(v), 1) for v in b]}
            for b, s, c in zip(np.asarray(boxes), np.asarray(scores), np.asarray(class_ids))
        ]
        record = {"frame": frame, "source_index": source_index, "time_s": round(time_s, 4),
                  "width": int(shape[1]), "height": int(shape[0]), "detections": detections}
        if source is not None:
            record["source"] = source
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            self.frames += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
