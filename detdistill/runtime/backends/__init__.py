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


SUFFIXES = {".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}  # what ``auto`` picks


def backend_for(path: str, backend: str = "auto") -> tuple[str, type]:
    """``(name, class)`` of the backend that opens ``path`` (``auto``: ``.onnx`` -> onnxruntime, ``.engine`` ->
    tensorrt); the class is imported here, on demand (the CLI starts fast)."""
    if backend == "auto":
        if Path(path).is_dir():
            raise ValueError(f"model {path} is a folder, not a file. Pass the .onnx or .engine in it.")
        backend = SUFFIXES.get(Path(path).suffix.lower(), "")
        if Path(path).suffix.lower() == ".pt":
            raise ValueError(f"{path} is a PyTorch checkpoint: the runtime opens .onnx and .engine files; export it "
                             f"with `detdistill export {path}` (or score the .pt itself with `detdistill eval`)")
        if not backend:
            raise ValueError(
                f"cannot pick a backend for {path!r}: expected a .onnx or .engine file "
                "(export a .pt first with `detdistill export`), or pass backend='onnxruntime'/'tensorrt'"
            )
    if backend == "onnxruntime":
        from .onnxruntime import OrtBackend  # lazy: loaded when picked

        return backend, OrtBackend
    if backend == "tensorrt":
        if Path(path).suffix.lower() == ".onnx":  # checked first: TensorRT's absence is not the problem
            raise ValueError(f"backend 'tensorrt' runs a TensorRT .engine, and {Path(path).name} is an ONNX: build one "
                             f"with `detdistill build {path}` (on the device), or run the ONNX with backend "
                             "'onnxruntime' (or auto)")
        from .tensorrt import TrtBackend  # lazy: as above

        return backend, TrtBackend
    raise ValueError(f"unknown backend {backend!r}: use 'auto', 'onnxruntime' or 'tensorrt'")


def describe_backend(backend: Backend) -> str:
    """What computes ``backend``'s outputs, as eval, bench and the demo name it: the runtime, where it runs, the
    precision, and for the CPU its instruction set (``ONNX Runtime CPU INT8 kernels, u8s7 (avx2)``)."""
    from ..cpu import instruction_set  # lazy: as the backends (the CLI starts fast)

    q = backend.info.quantization
    providers = getattr(backend, "providers", None)
    if providers is None:
        return type(backend).__name__.replace("Backend", "")  # Torch, Trt
    where = "CPU" if providers[0] == "CPUExecutionProvider" else providers[0].replace("ExecutionProvider", "")
    isa = f" ({instruction_set()})" if where == "CPU" else ""
    if not q:
        return f"ONNX Runtime {where} FP32{isa}"
    if q.get("target") == "tensorrt":  # Q/DQ on convolution inputs only: ONNX Runtime fuses no integer kernel
        fused = "" if not backend.int8_kernels else ": TensorRT's Q/DQ placement fuses no integer kernel here"
        return f"simulated TensorRT INT8 (Q/DQ in float on ONNX Runtime {where}{fused})"
    if not backend.int8_kernels:
        return f"simulated INT8 (Q/DQ in float on ONNX Runtime {where})"
    return f"ONNX Runtime {where} INT8 kernels, {q.get('scheme', 'u8s8')}{isa}"
