#!/usr/bin/env python
"""Run Python on an emulated CPU: an AVX2-only x86 or an ARM64 core, through Debian's qemu-user.

INT8 accuracy depends on the CPU's integer kernels (see ``detdistill/runtime/cpu.py``). This machine has
one CPU; qemu's user-mode emulator runs ONNX Runtime's real kernels for another instruction set, so the
same file can be scored as an AVX2-only x86, a Jetson Nano/TX2-class ARMv8.0 core (no dot product) or an
ARMv8.2 core with dot product (Jetson Orin's Cortex-A78AE, Graviton2) would score it. Emulated time
means nothing: only outputs are measured.

* x86 CPUs run this machine's own Python under ``qemu-x86_64 -cpu MODEL``.
* ARM64 CPUs run an arm64 Debian Python with arm64 wheels under ``qemu-aarch64 -cpu MODEL -L PREFIX``.
  ``prepare`` builds that sysroot once (Debian's arm64 packages and PyPI's aarch64 wheels, no build), with
  one prefix per CPU whose ``/proc/cpuinfo`` describes that CPU: ONNX Runtime picks its kernels from it,
  and a description that claims more than the emulated CPU has ends in an illegal instruction.

    apt-get install qemu-user debootstrap
    python tools/emulated_cpu.py prepare                  # about 500 MB under .emulated/ (git-ignored)
    python tools/emulated_cpu.py run cortex-a57 -- -c "import onnxruntime; print(onnxruntime.__version__)"
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSROOT = Path(os.environ.get("DETDISTILL_EMULATED", ROOT / ".emulated"))
DEBIAN = "bookworm"
ARM64_PYTHON = "/usr/bin/python3.11"  # bookworm's; the wheels below are chosen for it
PACKAGES = ("python3.11", "libpython3.11-stdlib", "libstdc++6", "libgomp1")


@dataclass(frozen=True)
class EmulatedCpu:
    qemu_model: str
    arch: str  # x86_64 or aarch64
    describes: str  # what real CPUs it stands for
    cpu_part: str = ""  # ARM: MIDR part number for /proc/cpuinfo
    features: str = ""  # ARM: /proc/cpuinfo features


_ARM_BASE = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
CPUS = {
    "haswell": EmulatedCpu("Haswell", "x86_64", "x86-64 with AVX2, no AVX-512, no VNNI"),
    "cortex-a57": EmulatedCpu("cortex-a57", "aarch64", "ARMv8.0, no dot product (Jetson Nano, TX1, TX2)",
                              "0xd07", _ARM_BASE),
    "cortex-a76": EmulatedCpu("cortex-a76", "aarch64", "ARMv8.2 with dot product (like Jetson Orin's A78AE)",
                              "0xd0b", _ARM_BASE + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"),
}


def wheel_pins() -> list[str]:
    """The aarch64 wheels that ``detdistill eval`` needs, at this machine's versions where they compute: both CPUs
    run the same code."""
    from importlib.metadata import version

    same = [f"{name}=={version(name)}" for name in ("numpy", "onnxruntime", "faster-coco-eval")]
    return [*same, "opencv-python-headless", "pyyaml"]


def prefix(name: str) -> Path:
    return SYSROOT / name


def ready(name: str) -> str | None:
    """``None`` when CPU ``name`` can be emulated here, else why not (for a skip or an error message)."""
    if name not in CPUS:
        return f"unknown emulated CPU {name!r}: use one of {', '.join(CPUS)}"
    cpu = CPUS[name]
    if not shutil.which(f"qemu-{cpu.arch}"):
        return f"qemu-{cpu.arch} not found (apt-get install qemu-user)"
    if cpu.arch == "x86_64" and platform.machine().lower() not in ("x86_64", "amd64"):
        return "an x86 CPU is emulated with this machine's own Python, which is not an x86-64 program here"
    if cpu.arch == "aarch64" and not (prefix(name) / ARM64_PYTHON.lstrip("/")).exists():
        return f"no arm64 sysroot at {prefix(name)} (python tools/emulated_cpu.py prepare)"
    return None


def python_command(name: str) -> tuple[list[str], dict[str, str]]:
    """The argv prefix that runs Python on CPU ``name``, and the environment to add (PYTHONPATH)."""
    if why := ready(name):
        sys.exit(f"cannot emulate {name}: {why}")
    cpu = CPUS[name]
    qemu = [shutil.which(f"qemu-{cpu.arch}"), "-cpu", cpu.qemu_model]
    if cpu.arch == "x86_64":
        return [*qemu, sys.executable], {"PYTHONPATH": str(ROOT)}
    site = SYSROOT / "site-packages"
    return [*qemu, "-L", str(prefix(name)), "-E", f"PYTHONPATH={site}{os.pathsep}{ROOT}",
            str(prefix(name) / ARM64_PYTHON.lstrip("/"))], {}


def cpuinfo(cpu: EmulatedCpu, cores: int = 2) -> str:
    block = ("processor\t: {i}\nBogoMIPS\t: 62.50\nFeatures\t: {f}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {p}\nCPU revision\t: 1\n")
    return "\n".join(block.format(i=i, f=cpu.features, p=cpu.cpu_part) for i in range(cores)) + "\n"


def prepare(wheels: list[str]) -> None:
    """Build the arm64 sysroot under ``SYSROOT``: Debian's Python, the aarch64 wheels, one prefix per ARM CPU."""
    for tool in ("debootstrap", "dpkg"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install debootstrap qemu-user")
    base = SYSROOT / "base"
    if not (base / ARM64_PYTHON.lstrip("/")).exists():
        print(f"debootstrap arm64 {DEBIAN} -> {base}", flush=True)
        shutil.rmtree(base, ignore_errors=True)  # what an interrupted earlier run left
        subprocess.run(["debootstrap", "--foreign", "--arch", "arm64", "--variant=minbase",
                        f"--include={','.join(PACKAGES)}", DEBIAN, str(base), "http://deb.debian.org/debian"],
                       check=True, stdout=subprocess.DEVNULL)
        for deb in sorted((base / "var/cache/apt/archives").glob("*.deb")):  # --foreign unpacks the base only
            subprocess.run(["dpkg", "-x", str(deb), str(base)], check=True)
            deb.unlink()
    site = SYSROOT / "site-packages"
    print(f"aarch64 wheels ({', '.join(wheels)}) -> {site}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--target", str(site),
                    "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64",
                    "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:", *wheels], check=True)
    for name, cpu in CPUS.items():
        if cpu.arch != "aarch64":
            continue
        p = prefix(name)
        p.mkdir(parents=True, exist_ok=True)
        for entry in base.iterdir():  # the shared root, seen through this CPU's prefix
            link = p / entry.name
            if entry.name != "proc" and not link.is_symlink():
                link.symlink_to(Path("..") / "base" / entry.name)
        (p / "proc").mkdir(exist_ok=True)
        (p / "proc" / "cpuinfo").write_text(cpuinfo(cpu))
    for name, cpu in CPUS.items():
        print(f"{name}: {cpu.describes}: {ready(name) or 'ready'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    prep = sub.add_parser("prepare", help="build the arm64 sysroot (needs debootstrap and the package registries)")
    prep.add_argument("--wheel", action="append", help="an aarch64 wheel requirement to add (repeatable)")
    run = sub.add_parser("run", help="run Python on an emulated CPU: run CPU -- ARGS")
    run.add_argument("cpu", choices=tuple(CPUS))
    run.add_argument("args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(wheel_pins() + (args.wheel or []))
        return
    cmd, env = python_command(args.cpu)
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    sys.exit(subprocess.run([*cmd, *extra], env={**os.environ, **env}).returncode)


if __name__ == "__main__":
    main()
