"""deploy/jetson: setup.sh's L4T parsing and plan (fake release files), the unit file, the recipes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "deploy" / "jetson"
SETUP = KIT / "setup.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")

RELEASES = {
    "jp512": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023",
    "jp61": "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024",
    "jp62": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025",
    "jp70": "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, DATE: Mon Aug 18 20:00:00 UTC 2025",
    "jp46": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9 04:25:08 UTC 2023",
    "jp50": "# R35 (release), REVISION: 1, GCID: 1, BOARD: t186ref, EABI: aarch64, DATE: x",
}


def bash(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script, "bash", *args], capture_output=True, text=True, timeout=60)


def call(function: str, *args: str) -> subprocess.CompletedProcess:
    return bash(f'source "{SETUP}" && {function} "$@"', *args)


@pytest.fixture
def release(tmp_path):
    def write(key: str) -> Path:
        path = tmp_path / f"nv_tegra_release_{key}"
        path.write_text(RELEASES[key] + "\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n")
        return path

    return write


def test_setup_script_syntax():
    done = subprocess.run(["bash", "-n", str(SETUP)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("key", "l4t", "jetpack", "line"),
    [("jp512", "35.4.1", "5.1.2", "jp5"), ("jp61", "36.4.0", "6.1", "jp6"), ("jp62", "36.4.3", "6.2", "jp6"),
     ("jp70", "38.2.0", "7.0", "jp7"), ("jp46", "32.7.4", "4.6", "unsupported"), ("jp50", "35.1.0", "5.0.2", "jp5")],
)
def test_l4t_parsing_and_jetpack_mapping(release, key, l4t, jetpack, line):
    parsed = call("parse_l4t_release", str(release(key)))
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.strip() == l4t
    assert call("jetpack_for_l4t", l4t).stdout.strip() == jetpack
    assert call("jetpack_line", l4t).stdout.strip() == line


def test_parse_rejects_missing_or_garbled_files(tmp_path):
    missing = call("parse_l4t_release", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "is this a Jetson" in missing.stderr
    garbled = tmp_path / "garbled"
    garbled.write_text("Jetson something\n")
    done = call("parse_l4t_release", str(garbled))
    assert done.returncode != 0 and "cannot parse" in done.stderr


def test_sourcing_defines_functions_without_running_main():
    done = bash(f'source "{SETUP}" && type -t main parse_l4t_release apt_packages cuda_binding_spec')
    assert done.returncode == 0 and done.stdout.split() == ["function"] * 4 and done.stderr == ""


@pytest.mark.parametrize(
    ("line", "choice", "spec"),
    [("jp6", "auto", "cuda-python>=12.6,<13"), ("jp7", "auto", "cuda-python>=13,<14"), ("jp6", "pycuda", "pycuda"),
     ("jp7", "cuda-python", "cuda-python>=13,<14")],
)
def test_cuda_binding_per_line(line, choice, spec):
    assert call("cuda_binding_spec", line, choice).stdout.strip() == spec


def test_apt_packages_per_line():
    for line in ("jp6", "jp7"):
        packages = call("apt_packages", line).stdout.split()
        assert {"python3-libnvinfer", "python3-venv", "gstreamer1.0-plugins-good", "v4l-utils"} <= set(packages)
        assert "nvidia-opencv" in packages or "python3-opencv" in packages
    assert call("apt_packages", "unsupported").returncode != 0 and call("apt_packages", "jp5").returncode != 0


@pytest.mark.parametrize(("key", "binding"), [("jp61", "cuda-python\\>=12.6\\,\\<13"),
                                             ("jp70", "cuda-python\\>=13\\,\\<14")])
def test_dry_run_plan(release, tmp_path, key, binding):
    venv = tmp_path / "venv"
    done = subprocess.run([str(SETUP), "--dry-run", "--release-file", str(release(key)), "--venv", str(venv)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "apt-get install -y --no-install-recommends" in out and "python3-libnvinfer" in out
    assert f"python3 -m venv --system-site-packages {venv}" in out
    assert f"{venv}/bin/pip install numpy\\<2 {ROOT} onnx faster-coco-eval" in out  # onnx: `detdistill build`
    assert f"{venv}/bin/pip install {binding}" in out
    assert "uninstall -y opencv-python" in out
    assert "torch" not in out and "ultralytics" not in out
    assert "JetPack" in done.stderr


@pytest.mark.parametrize(("key", "why"), [("jp46", "Python 3.6"), ("jp512", "Python 3.10 or newer"),
                                         ("jp50", "Python 3.10 or newer")])
def test_unsupported_jetpack_stops_with_advice_before_apt(release, key, why):
    """JetPack 4 and 5: their TensorRT bindings are for Python 3.6 / 3.8, and detdistill needs 3.10+."""
    done = subprocess.run([str(SETUP), "--dry-run", "--release-file", str(release(key))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not supported" in done.stderr and why in done.stderr, done.stderr
    assert "JetPack 6.x (Orin)" in done.stderr and "apt-get" not in done.stdout


def test_l4t_override_and_bad_option():
    done = subprocess.run([str(SETUP), "--dry-run", "--l4t", "36.4.3", "--no-apt", "--venv", "/opt/x/venv"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "apt-get" not in done.stdout and "JetPack 6.2" in done.stderr
    bad = subprocess.run([str(SETUP), "--frobnicate"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "unknown option" in bad.stderr


def test_systemd_unit():
    unit = (KIT / "detdistill-demo.service").read_text()
    assert "KillSignal=SIGINT" in unit and "--no-show" in unit and "Restart=on-failure" in unit
    assert "EnvironmentFile=/etc/default/detdistill-demo" in unit
    env = (KIT / "detdistill-demo.env").read_text()
    assert "DETDISTILL_MODEL=" in env and "DETDISTILL_SOURCE=" in env
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run(["systemd-analyze", "verify", str(KIT / "detdistill-demo.service")],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "is not executable" not in line and "No such file" not in line]
    assert not problems, problems


def test_container_recipes():
    for jp, tag in (("jp6", "r36"),):
        text = (KIT / f"Dockerfile.{jp}").read_text()
        assert f"nvcr.io/nvidia/l4t-jetpack:${{L4T_TAG}}" in text and f"L4T_TAG={tag}." in text
        assert "setup.sh" in text
        assert not [line for line in text.splitlines() if "torch" in line and not line.lstrip().startswith("#")]
        assert (KIT / f"Dockerfile.{jp}.dockerignore").exists()

