"""Minimal CUDA memory/stream helper over pycuda, or cuda-python when pycuda is absent."""

from __future__ import annotations

import atexit
from typing import Any

import numpy as np

from ...dependencies import MissingDependencyError


class CudaMem:
    """Device buffers, one stream, async copies. ``impl`` is ``"pycuda"`` or ``"cuda-python"``."""

    def __init__(self, impl: str | None = None) -> None:
        self.impl, self._lib = _load(impl)
        if self.impl == "pycuda":
            self.stream = self._lib.Stream()
            self.stream_handle = self.stream.handle
        else:
            self.stream = self._check(self._lib.cudaStreamCreate())
            self.stream_handle = int(self.stream)
        self._allocs: list[Any] = []

    def _check(self, ret: tuple) -> Any:
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` on the device, return its address."""
        if self.impl == "pycuda":
            buf = self._lib.mem_alloc(max(nbytes, 1))
            self._allocs.append(buf)
            return int(buf)
        ptr = self._check(self._lib.cudaMalloc(max(nbytes, 1)))
        self._allocs.append(ptr)
        return int(ptr)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        """Copy a contiguous host array to the device (async on the stream)."""
        if self.impl == "pycuda":
            self._lib.memcpy_htod_async(ptr, host, self.stream)
        else:
            kind = self._lib.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self._lib.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream))

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        """Copy device memory into a contiguous host array (async on the stream)."""
        if self.impl == "pycuda":
            self._lib.memcpy_dtoh_async(host, ptr, self.stream)
        else:
            kind = self._lib.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self._lib.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream))

    def synchronize(self) -> None:
        """Wait for the stream."""
        if self.impl == "pycuda":
            self.stream.synchronize()
        else:
            self._check(self._lib.cudaStreamSynchronize(self.stream))

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """Host array for transfers (page-locked with pycuda)."""
        if self.impl == "pycuda":
            return self._lib.pagelocked_empty(shape, dtype)
        return np.empty(shape, dtype)


_primary_context: Any = None


def _push_primary_context(drv: Any) -> None:
    """Make GPU 0's primary context current, once per process.

    TensorRT and the CUDA runtime work in the primary context; ``pycuda.autoinit`` would create a
    second one, and an engine and its buffers in different contexts fail at execution.
    """
    global _primary_context
    if _primary_context is None:
        drv.init()
        _primary_context = drv.Device(0).retain_primary_context()
        _primary_context.push()
        atexit.register(_primary_context.pop)


def _load(impl: str | None) -> tuple[str, Any]:
    if impl in (None, "pycuda"):
        try:
            import pycuda.driver as drv  # lazy: pycuda, cuda (optional: either one serves TensorRT)

            _push_primary_context(drv)
            return "pycuda", drv
        except ImportError:
            if impl == "pycuda":
                raise MissingDependencyError("pycuda is not installed: pip install pycuda") from None
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise MissingDependencyError(
                "TensorRT inference needs pycuda or cuda-python: pip install pycuda "
                "(on Jetson: pip install pycuda after installing nvidia-jetpack), or pip install cuda-python"
            ) from None
    return "cuda-python", cudart
