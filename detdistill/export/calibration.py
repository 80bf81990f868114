"""Calibration images for INT8: which of them are usable, the batches ONNX Runtime's calibrator reads, and the
cache file of their ranges."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.images import read_bgr, usable_images
from ..hashing import file_sha256, files_key
from ..runtime.letterbox import preprocess
from ..runtime.metadata import ModelInfo

CALIB_CHUNK = 8  # batches held in memory at once during calibration
ADVISED_CALIB_IMAGES = 500  # fewer than this earns a note; calibration ranges get noisy below ~100


class CalibrationReader:
    """ONNX Runtime calibration reader: letterboxed images, one batch at a time."""

    def __init__(self, files: Sequence[Path], info: ModelInfo, input_name: str, batch: int = 1) -> None:
        self.files, self.info, self.input_name, self.batch = list(files), info, input_name, batch
        self.rewind()

    def rewind(self) -> None:
        self._i, self._end = 0, len(self.files)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve batches ``[start_index, end_index)`` (chunked calibration)."""
        self._i, self._end = start_index * self.batch, min(end_index * self.batch, len(self.files))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= self._end:
            return None
        chunk = self.files[self._i:self._i + self.batch]
        self._i += self.batch
        xs = [preprocess(read_bgr(f), self.info.imgsz, mode=self.info.letterbox, pad_value=self.info.pad_value)[0]
              for f in chunk]
        while len(xs) < self.batch:  # static batch: repeat the last image
            xs.append(xs[-1])
        return {self.input_name: np.concatenate(xs)}

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch)


def usable_calibration_images(files: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The readable images of ``files`` and notes on what was left out; raises when none is usable."""
    usable, skipped = usable_images(files, "calibration images")
    notes = [skipped] if skipped else []
    if len(usable) < ADVISED_CALIB_IMAGES:
        notes.append(f"calibrated on {len(usable)} images; {ADVISED_CALIB_IMAGES}-1000 of your domain are advised "
                     "for stable INT8 ranges")
    return usable, notes


def calibration_cache_path(onnx_path: Path, files: Sequence[Path], kind: str, cache_dir: Path) -> Path:
    """Cache file keyed by model hash, image set and ``kind`` (target, method, batch); the model's hash holds its
    input size."""
    key = f"{file_sha256(onnx_path)[:16]}-{files_key(files)}-{kind}"
    return cache_dir / f"calib-{key}.json"
