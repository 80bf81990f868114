"""detdistill.runtime imports and detects with torch and ultralytics made unimportable (a bare Jetson image)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import export_teacher, val_images

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "torchvision", "ultralytics"}:
                raise ImportError(f"{name} is blocked: the runtime must not need it")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def test_runtime_runs_without_torch(tmp_path_factory, teacher_pt, coco_mini_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    image = val_images(coco_mini_yaml, 1)[0]
    code = BLOCKER + textwrap.dedent(
        f"""
        import cv2
        from detdistill.runtime import Detector, Detections
        from detdistill.runtime.backends import tensorrt, onnxruntime  # both backends import cleanly
        det = Detector({str(onnx_path)!r}, conf=0.25)
        res = det(cv2.imread({str(image)!r}))
        assert isinstance(res, Detections) and len(res) > 0, res
        assert not any(m.split(".")[0] in {{"torch", "ultralytics"}} for m in sys.modules)
        print("ok", len(res), det.names[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and "person" in out.stdout


def test_blocker_really_blocks():
    out = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert out.returncode != 0 and "blocked" in out.stderr
