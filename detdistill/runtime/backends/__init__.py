"""Inference backends: each turns a ``(B, 3, H, W)`` float32 array into the model's raw outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..metadata import ModelInfo


@runtime_checkable
class Backend(Protocol):
    """What :class:`detdistill.runtime.Detector` needs from an inference engine."""

    info: ModelInfo
    input_shape: tuple[int, ...]  # (B, 3, H, W); -1 where dynamic
    input_dtype: type

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch, return the outputs in the model's output order."""
        ...


def load_backend(path: str, backend: str = "auto", **kwargs) -> Backend:
    """Open ``path`` with the named backend (``auto``: ``.onnx`` -> onnxruntime, ``.engine`` -> tensorrt)."""
    suffix = Path(path).suffix.lower()
    if backend == "auto":
        backend = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}.get(suffix, "")
        if not backend:
            raise ValueError(
                f"cannot pick a backend for {path!r}: expected a .onnx or .engine file "
                "(export a .pt first with `detdistill export`), or pass backend='onnxruntime'/'tensorrt'"
            )
    if backend == "onnxruntime":
        from .onnxruntime import OrtBackend  # lazy: loaded when picked (the CLI starts fast)

        return OrtBackend(path, **kwargs)
    if backend == "tensorrt":
        from .tensorrt import TrtBackend  # lazy: as above

        return TrtBackend(path, **kwargs)
    raise ValueError(f"unknown backend {backend!r}: use 'auto', 'onnxruntime' or 'tensorrt'")
