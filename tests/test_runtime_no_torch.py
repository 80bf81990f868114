"""detdistill.runtime imports and detects with torch and ultralytics made unimportable (a bare Jetson image)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import RUNTIME_ABSENT, RUNTIME_ONLY_BLOCKER, export_teacher, import_blocker, val_images


def test_runtime_runs_without_torch(tmp_path_factory, teacher_pt, coco_mini_yaml):
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    image = val_images(coco_mini_yaml, 1)[0]
    code = RUNTIME_ONLY_BLOCKER + textwrap.dedent(
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
    out = subprocess.run([sys.executable, "-c", RUNTIME_ONLY_BLOCKER + "import torch"], capture_output=True, text=True)
    assert out.returncode != 0 and "blocked" in out.stderr


def _cli_without_torch(*args, also_missing: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``detdistill ARGS`` in a fresh interpreter where only the runtime extra's packages import (and not even
    ``also_missing``)."""
    code = import_blocker(RUNTIME_ABSENT | set(also_missing)) + (
        f"from detdistill.cli import app\nsys.argv = ['detdistill', *{list(map(str, args))!r}]\napp()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_eval_and_bench_run_on_the_runtime_extra_alone(tmp_path_factory, tmp_path, teacher_pt, coco8_yaml):
    """`eval` and `bench` of FP32 and INT8 ONNX files need neither torch nor the onnx package (a runtime-only
    install lacks both: eval used onnx to read the model's metadata); a verb that needs a missing package says
    which extra to install, in one line."""
    from detdistill.export.quantize import quantize_onnx

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    images = coco8_yaml.parent / "images" / "val"
    int8 = quantize_onnx(onnx_path, images, tmp_path / "teacher.int8.onnx", target="tensorrt", num_images=4).path
    for model, extra, evaluator in ((onnx_path, [], "ONNX Runtime CPU FP32"),
                                    (int8, ["--int8", "simulate"], "simulated TensorRT INT8")):
        out = _cli_without_torch("eval", model, "--data", coco8_yaml, "--limit", "2", *extra)
        assert out.returncode == 0 and "mAP50-95" in out.stdout and evaluator in out.stdout, out.stderr[-2000:]
    out = _cli_without_torch("bench", int8, "--images", images, "--runs", "50", "--warmup", "1")
    assert out.returncode == 0 and "inference" in out.stdout, out.stderr[-2000:]
    out = _cli_without_torch("eval", onnx_path, "--data", coco8_yaml, "--int8", "kernels")  # FP32: still refused
    assert out.returncode == 2 and "is not one: leave it at 'auto' (drop --int8)" in out.stderr, out.stderr[-2000:]
    out = _cli_without_torch("eval", teacher_pt, "--data", coco8_yaml, "--limit", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "yolov8n-coco.pt is a PyTorch checkpoint, and torch is not installed here (a runtime install): score its " \
        "exported .onnx or .engine, or pip install 'detdistill[train]'" in out.stderr, out.stderr


def test_recipes_are_listed_and_printed_without_torch():
    """`detdistill recipes` reads YAML files: an install without torch lists and prints them."""
    listing = _cli_without_torch("recipes")
    assert listing.returncode == 0, listing.stderr[-2000:]
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert "default" in names and "at" in names and "cwd" in names, listing.stdout
    assert "the same as at" in listing.stdout
    printed = _cli_without_torch("recipes", "cwd")
    assert printed.returncode == 0 and "losses:" in printed.stdout and "cwd" in printed.stdout, printed.stderr[-2000:]


def test_an_onnx_without_onnxruntime_is_one_line_with_the_jetson_install(tmp_path_factory, teacher_pt, coco8_yaml):
    """A Jetson set up by setup.sh runs engines and has no ONNX Runtime: the demo and bench of an .onnx say what to
    install there (not the runtime extra alone, whose pip OpenCV would shadow JetPack's), in one line."""
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    images = coco8_yaml.parent / "images" / "val"
    for args in (("demo", "-m", onnx_path, "-s", images, "--no-show", "--max-frames", "1"),
                 ("bench", onnx_path, "--images", images, "--runs", "50")):
        out = _cli_without_torch(*args, also_missing=("onnxruntime",))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert "onnxruntime is not installed" in out.stderr and "on a Jetson: pip install onnxruntime" in out.stderr
