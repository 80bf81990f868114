"""Which integer instruction set this CPU gives ONNX Runtime, and which INT8 schemes it runs exactly.

ONNX Runtime multiplies uint8 activations by int8 weights with the best instruction it finds:

* x86 with VNNI (``vpdpbusd``; AVX-512 VNNI or AVX-VNNI) accumulates each product in 32 bits: exact;
* x86 without VNNI (AVX2, or AVX-512 before Cascade Lake) uses ``vpmaddubsw``, which adds two
  uint8 x int8 products into a *saturating* int16: 255 * 127 * 2 overflows it, so full-range int8
  weights (``u8s8``) lose accuracy there (ONNX Runtime's quantization guide names the two fixes:
  7-bit weights, ``u8s7``, or uint8 weights, ``u8u8``);
* ARM64 (dot-product or widening multiplies) accumulates in 32 bits: exact.

Detection is torch-free and reads the CPUID bits that numpy's own dispatcher reads, so it describes
the CPU this process runs on (also under an emulator); ``/proc/cpuinfo`` adds AVX-VNNI, which numpy
does not report, where it agrees with numpy.
"""

from __future__ import annotations

import platform
import re
import subprocess
from functools import lru_cache
from pathlib import Path

try:
    from numpy._core._multiarray_umath import __cpu_features__  # numpy >= 2
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core._multiarray_umath import __cpu_features__

# Schemes exact on every ISA, and those that saturate on some.
SATURATING = {"u8s8": ("avx2", "avx512")}


def _numpy_features() -> dict[str, bool]:
    return {k: bool(v) for k, v in __cpu_features__.items()}


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it (e.g. ``AMD EPYC``, ``Cortex-A78AE``), or the machine name
    (``x86_64``) where lscpu is missing or says none."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    name = re.search(r"^Model name:\s*(.+)$", text, re.M)
    return name.group(1).strip() if name else platform.machine()


@lru_cache(maxsize=1)
def instruction_set() -> str:
    """``avx512-vnni``, ``avx-vnni``, ``avx512``, ``avx2``, ``x86`` (older), ``arm64-dotprod``, ``arm64`` or the machine name."""
    machine = platform.machine().lower()
    f = _numpy_features()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if f.get("AVX512VNNI"):
            return "avx512-vnni"
        flags = _cpuinfo_flags()
        # /proc/cpuinfo describes the host, not an emulated CPU: trust it only where it agrees with numpy
        consistent = ("avx512f" in flags) == f.get("AVX512F", False) and ("avx2" in flags) == f.get("AVX2", False)
        if consistent and "avx_vnni" in flags:
            return "avx-vnni"
        if f.get("AVX512BW"):
            return "avx512"
        return "avx2" if f.get("AVX2") else "x86"
    if machine in ("aarch64", "arm64"):
        return "arm64-dotprod" if f.get("ASIMDDP") else "arm64"
    return machine or "unknown"


def scheme_saturates(scheme: str | None, isa: str | None = None) -> bool:
    """True where ``scheme``'s integer kernels saturate on ``isa`` (default: this CPU)."""
    return (isa or instruction_set()) in SATURATING.get(scheme or "", ())


def saturation_warning(scheme: str | None, isa: str | None = None) -> str | None:
    """A warning for an INT8 model whose scheme loses accuracy on this CPU, or ``None``."""
    isa = isa or instruction_set()
    if not scheme_saturates(scheme, isa):
        return None
    return (f"this INT8 model uses full-range int8 weights ({scheme}), whose integer kernels saturate on this CPU "
            f"({isa}, no VNNI) and lose accuracy; re-quantize it with `detdistill quantize ... --scheme u8s7` "
            "(7-bit weights, exact on every CPU)")
