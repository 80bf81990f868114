"""TensorRT backend: name-based I/O API (TensorRT 8.6 / 10 / 11), engine + JSON sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...dependencies import MissingDependencyError
from ..metadata import ModelInfo
from ..model_file import require_model_file
from .cuda_mem import CudaMem
from .shape import check_input


class TensorRTMissingError(MissingDependencyError):
    """TensorRT is not installed here (the message says how to get it)."""


class EngineMismatchError(RuntimeError):
    """An engine built by another TensorRT version than the installed one."""


def sidecar_path(engine: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_engine(path: Path) -> tuple[bytes, dict[str, Any]]:
    """Engine bytes and metadata: from the sidecar, or from an ultralytics length-prefixed JSON header."""
    data = path.read_bytes()
    meta: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.is_file():
        meta = json.loads(side.read_text())
    elif len(data) > 4:
        n = int.from_bytes(data[:4], "little")
        if 0 < n < min(len(data) - 4, 1 << 20) and data[4:5] == b"{":
            try:
                meta = json.loads(data[4:4 + n].decode())
                data = data[4 + n:]
            except (UnicodeDecodeError, json.JSONDecodeError):
                meta = {}
    return data, meta


def check_version(meta: dict[str, Any], installed: str, path: Path) -> None:
    """Fail clearly when the engine was built by another TensorRT (major.minor) than the installed one."""
    built = str(meta.get("tensorrt", "") or "")
    if built and built.split(".")[:2] != installed.split(".")[:2]:
        gpu = meta.get("gpu", "an unknown GPU")
        raise EngineMismatchError(
            f"{path} was built with TensorRT {built} on {gpu}, but this machine has TensorRT {installed}. "
            "Engines only run on the TensorRT version (and GPU) that built them: copy the .onnx here and "
            f"rebuild with `detdistill build {meta.get('source_onnx', 'model.onnx')}`."
        )


def import_tensorrt() -> Any:
    """Import ``tensorrt`` or explain how to get it."""
    try:
        import tensorrt as trt  # lazy: tensorrt (the onnxruntime backend runs without it)
    except ImportError:
        raise TensorRTMissingError(
            "TensorRT is not importable. On Jetson it ships with JetPack (sudo apt install nvidia-jetpack, or "
            "python3-libnvinfer), and a venv sees it only if made with --system-site-packages (deploy/jetson/setup.sh "
            "makes one); on x86: pip install tensorrt. Or run the model's .onnx instead (ONNX Runtime)."
        ) from None
    return trt


class TrtBackend:
    """Runs a serialized TensorRT engine. ``trt`` and ``cuda`` may be injected (test seam)."""

    def __init__(self, path: str | Path, trt: Any = None, cuda: CudaMem | None = None, batch: int = 1) -> None:
        path = Path(path)
        require_model_file(path, "TensorRT", "Build one with `detdistill build model.onnx`.")
        self.trt = trt or import_tensorrt()
        data, meta = read_engine(path)
        check_version(meta, self.trt.__version__, path)
        self.info = ModelInfo.from_mapping(meta)
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT {self.trt.__version__} could not deserialize {path}: it was most likely built by another "
                "TensorRT version or for another GPU. Rebuild it on this device with `detdistill build`."
            )
        self.context = self.engine.create_execution_context()
        self.cuda = cuda or CudaMem()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
        if len(self.inputs) != 1:
            raise RuntimeError(f"expected one image input, the engine has {self.inputs}")
        self.input_name = self.inputs[0]
        self.input_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.input_name))
        self.input_dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(self.input_name))).type
        if self.info.imgsz is None and all(d > 0 for d in self.input_shape[2:]):
            self.info.imgsz = (self.input_shape[2], self.input_shape[3])
        self._bound: tuple[int, ...] | None = None
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}
        self._bind(self._concrete(batch))

    def _concrete(self, batch: int) -> tuple[int, ...]:
        b, c, h, w = self.input_shape
        imgsz = self.info.imgsz or (h, w)
        return (batch if b < 0 else b, c, imgsz[0] if h < 0 else h, imgsz[1] if w < 0 else w)

    def _bind(self, shape: tuple[int, ...]) -> None:
        """Set the input shape (dynamic engines) and (re)allocate every I/O buffer for it."""
        check_input(shape, self.input_shape)
        if -1 in self.input_shape:
            self.context.set_input_shape(self.input_name, shape)
        for name in self.inputs + self.outputs:
            shp = tuple(int(d) for d in self.context.get_tensor_shape(name))
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            host = self.cuda.pinned(shp, dtype)
            ptr = self.cuda.malloc(host.nbytes)
            self.context.set_tensor_address(name, ptr)
            self._buffers[name] = (ptr, host)
        self._bound = shape

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Copy in, ``execute_async_v3``, copy out, synchronize."""
        if x.shape != self._bound:
            self._bind(tuple(x.shape))
        ptr, host = self._buffers[self.input_name]
        np.copyto(host, x.astype(host.dtype, copy=False))
        self.cuda.htod(ptr, host)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        outs = []
        for name in self.outputs:
            optr, ohost = self._buffers[name]
            self.cuda.dtoh(ohost, optr)
            outs.append(ohost)
        self.cuda.synchronize()
        return [o.copy() for o in outs]
