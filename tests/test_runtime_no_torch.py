"""detdistill.runtime imports and detects with torch and ultralytics made unimportable (a bare Jetson image)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import TORCH_BLOCKER, export_teacher, val_images


def test_runtime_runs_without_torch(tmp_path_factory, teacher_pt, coco_mini_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    image = val_images(coco_mini_yaml, 1)[0]
    code = TORCH_BLOCKER + textwrap.dedent(
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
    out = subprocess.run([sys.executable, "-c", TORCH_BLOCKER + "import torch"], capture_output=True, text=True)
    assert out.returncode != 0 and "blocked" in out.stderr
