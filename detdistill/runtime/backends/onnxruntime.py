"""ONNX Runtime backend (CPU, CUDA or TensorRT execution provider)."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from ...dependencies import MissingDependencyError
from ..cpu import saturation_warning
from ..metadata import ModelInfo
from ..model_file import EXPORT_ONE, opening_onnx, require_model_file
from .shape import check_input

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class OnnxRuntimeMissingError(MissingDependencyError):
    """ONNX Runtime is not installed here (the message says how to get it, on a Jetson too)."""


def _onnxruntime():
    try:
        import onnxruntime  # lazy: onnxruntime (missing, it says what to install)
    except ImportError as e:
        raise OnnxRuntimeMissingError(
            "onnxruntime is not installed: pip install 'detdistill[runtime]' (on a Jetson: pip install onnxruntime, or "
            "the onnxruntime-gpu wheel for your JetPack, since the extra's pip OpenCV would shadow JetPack's; or run a "
            "TensorRT .engine built with `detdistill build`)") from e
    return onnxruntime


class ProviderError(RuntimeError):
    """The ONNX Runtime device asked for has no execution provider in this install (the CLI prints one line)."""


def resolve_providers(device: str, available: list[str]) -> list[str]:
    """Map ``auto|cpu|cuda|tensorrt`` to an ordered provider list, failing clearly if one is missing."""
    if device == "auto":
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    if device not in PROVIDERS:
        raise ValueError(f"unknown ONNX Runtime device {device!r}: use one of auto, {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[device]
    if wanted not in available:
        hint = "pip install onnxruntime-gpu" if device != "cpu" else "pip install onnxruntime"
        raise ProviderError(
            f"ONNX Runtime has no {wanted} here (available: {', '.join(available)}); install a build with it "
            f"({hint}, or the Jetson wheel for your JetPack) or use --device cpu (device='cpu' in Python)"
        )
    chain = [wanted] + [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p != wanted]
    return [p for p in chain if p in available]


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata, read through ONNX Runtime (no ``onnx`` package: the runtime extra has none), on
    a session that optimises nothing."""
    ort = _onnxruntime()
    path = Path(path)
    require_model_file(path, "ONNX", EXPORT_ONE)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with opening_onnx(path):
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


class OrtBackend:
    """Runs an ONNX model with ONNX Runtime.

    ``int8_kernels=False`` turns graph optimisation off, so a Q/DQ model runs its QuantizeLinear and
    DequantizeLinear nodes as separate float operations around float convolutions: every value is
    rounded to its int8 grid exactly as TensorRT's explicit quantization does, and the products are
    summed without the 16-bit saturation of some CPU integer kernels. That is the faithful simulation of
    an int32-accumulating INT8 engine (slower: nothing is fused).
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 int8_kernels: bool = True) -> None:
        ort = _onnxruntime()
        path = Path(path)
        require_model_file(path, "ONNX", EXPORT_ONE)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)):
            raise TypeError(f"threads must be a whole number of CPU threads (0 or None: ONNX Runtime's default), got "
                            f"{threads!r}")
        if threads is not None and threads < 0:
            raise ValueError(f"threads must be 0 or more (0 or None: ONNX Runtime's default), got {threads}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        if not int8_kernels:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.int8_kernels = int8_kernels
        self.providers = resolve_providers(device, ort.get_available_providers())
        with opening_onnx(path):  # a truncated or non-ONNX file: one clear error, not ORT's InvalidProtobuf
            self.session = ort.InferenceSession(str(path), opts, providers=self.providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)
        self.input_dtype = _DTYPES.get(inp.type, np.float32)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = [tuple(o.shape) for o in self.session.get_outputs()]  # a dimension set at run time: a name
        self.info = ModelInfo.from_mapping(self.session.get_modelmeta().custom_metadata_map)
        self.accuracy_warning = self._saturation_warning()
        if self.info.imgsz is None and all(d > 0 for d in self.input_shape[2:]):
            self.info.imgsz = (self.input_shape[2], self.input_shape[3])

    def _saturation_warning(self) -> str | None:
        """Why this INT8 model may lose accuracy on this CPU's integer kernels, or ``None``."""
        q = self.info.quantization
        if not q or not self.int8_kernels or self.providers[0] != "CPUExecutionProvider":
            return None

        return saturation_warning(q.get("scheme", "u8s8"))  # no scheme in the metadata: u8s8, ONNX Runtime's default

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch."""
        check_input(x.shape, self.input_shape)
        return self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
