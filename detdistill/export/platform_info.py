"""Where are we building: GPU, compute capability, Jetson L4T / JetPack (torch-free, no TensorRT needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_JETPACK = {"32": "4.6", "34": "5.0", "35": "5.1", "36": "6.x", "38": "7.x"}  # L4T major -> JetPack


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str


def read_l4t(path: Path = TEGRA_RELEASE) -> str | None:
    """L4T version (e.g. ``36.4.0``) from ``/etc/nv_tegra_release``, ``None`` off Jetson."""
    if not path.is_file():
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", path.read_text())
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_for(l4t: str | None) -> str | None:
    """JetPack release line for an L4T version."""
    return _JETPACK.get(l4t.split(".")[0]) if l4t else None


def tensorrt_install_hint(l4t: str | None) -> str:
    """How to get TensorRT's Python bindings here."""
    jp = jetpack_for(l4t)
    if jp is None:
        return "pip install tensorrt (x86 + NVIDIA GPU), then rerun"
    if jp.startswith(("4", "5")):
        return (f"JetPack {jp} (L4T {l4t}) ships TensorRT 8.x: sudo apt install python3-libnvinfer "
                "(or the nvidia-jetpack meta-package); it binds to the system Python 3.8")
    return (f"JetPack {jp} (L4T {l4t}) ships TensorRT 10: sudo apt install nvidia-tensorrt python3-libnvinfer "
            "(or the nvidia-jetpack meta-package); in a venv use --system-site-packages")


def detect_gpu() -> GpuInfo | None:
    """The first CUDA GPU via cuda-python, pycuda or nvidia-smi; on Jetson the device-tree model name."""
    try:
        from cuda.bindings import runtime as cudart  # lazy: cuda (optional; pycuda or nvidia-smi instead)

        err, prop = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
            return GpuInfo(name.strip("\x00 "), f"{prop.major}.{prop.minor}")
    except Exception:  # noqa: BLE001 - any failure means "not this way"
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout.strip()
            if out:
                name, cc = (s.strip() for s in out.splitlines()[0].split(","))
                return GpuInfo(name, cc)
        except (subprocess.SubprocessError, ValueError):
            pass
    model = Path("/proc/device-tree/model")
    if read_l4t() and model.is_file():
        return GpuInfo(model.read_text().strip("\x00 \n"), "unknown")
    return None
