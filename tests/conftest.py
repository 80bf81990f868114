"""Shared test fixtures: real data and the real COCO teacher from ../shared/fixtures."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

if importlib.util.find_spec("ultralytics") is not None:
    # ultralytics' logger binds the stdout of the moment it is first imported: import it now, so that it is the real
    # stdout and not the buffer of a CliRunner call that closes it (a later log line would fail in any test order)
    import ultralytics.utils  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"fixture {path} is absent (tests read real data from ../shared/fixtures)")
    return path


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return _need(FIXTURES)


@pytest.fixture(scope="session")
def teacher_pt() -> Path:
    """The COCO-trained YOLOv8n checkpoint (80 classes)."""
    return _need(FIXTURES / "weights" / "yolov8n-coco.pt")


@pytest.fixture(scope="session")
def coco8_yaml() -> Path:
    return _need(FIXTURES / "coco8" / "coco8.yaml")


@pytest.fixture(scope="session")
def coco_mini_yaml() -> Path:
    return _need(FIXTURES / "coco-mini" / "data.yaml")


@pytest.fixture(scope="session")
def vehicles_yaml() -> Path:
    return _need(FIXTURES / "vehicles" / "data.yaml")


def load_tool(name: str) -> ModuleType:
    """The script ``tools/<name>.py`` imported as a module (tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def video_frame_count(path: Path) -> int:
    """Frames OpenCV decodes from a video file (asserting that it opens): a recording is complete and playable."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def export_teacher(tmp_path_factory, teacher_pt: Path, name: str = "teacher320.onnx", **kwargs) -> Path:
    """Export the teacher once per session (the fixtures folder is read-only: copy the .pt first)."""
    from detdistill.export.onnx_export import export_onnx  # torch: imported only by the tests that export

    base = tmp_path_factory.getbasetemp() / "exported"
    out = base / name
    if not out.exists():
        base.mkdir(exist_ok=True)
        pt = base / "teacher.pt"
        if not pt.exists():
            shutil.copy(teacher_pt, pt)
        export_onnx(pt, out, **{"imgsz": 320, **kwargs})
    return out


def val_images(coco_mini_yaml: Path, n: int) -> list[Path]:
    """The first ``n`` coco-mini val images."""
    return sorted((coco_mini_yaml.parent / "images" / "val").glob("*.jpg"))[:n]


class Interrupted(Exception):
    """A simulated Ctrl-C raised from a training callback."""


def stop_after_first_save(trainer) -> None:
    """An ``on_model_save`` callback: interrupt a training right after its first checkpoint is written."""
    raise Interrupted("simulated Ctrl-C after epoch 1 was saved")


def import_blocker(names: set[str]) -> str:
    """Code to prepend to a ``python -c`` script: importing any of ``names`` (top-level packages) fails as if it
    were not installed."""
    return textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(names)!r}:
                    raise ModuleNotFoundError(f"{{name}} is blocked: the runtime must not need it", name=name)
                return None

        sys.meta_path.insert(0, Block())
        """
    )


# What the runtime extra does not install (torch, torchvision, ultralytics, onnx, onnxslim) cannot be imported, as
# on a bare Jetson set up by deploy/jetson/setup.sh.
RUNTIME_ABSENT = {"torch", "torchvision", "ultralytics", "onnx", "onnxslim"}
RUNTIME_ONLY_BLOCKER = import_blocker(RUNTIME_ABSENT)


def demo_cli():
    """A typer app with the ``demo`` verb registered (and a second verb, so typer keeps ``demo`` a sub-command)."""
    import typer

    from detdistill.demo.cli import register

    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:
        pass

    return app
