"""The deploy verbs: help a newcomer can follow, and clear errors on bad input."""

from __future__ import annotations

import importlib.util

import pytest
import typer
from typer.testing import CliRunner

from detdistill.export.cli import register

VERBS = ("export", "quantize", "build", "eval", "bench")


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    register(app)
    return app


def _run(app, *args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.parametrize("verb", VERBS)
def test_help(app, verb):
    out = _run(app, verb, "--help")
    assert out.exit_code == 0 and "Example: detdistill " + verb in out.output.replace("\n", " ").replace("  ", " ")


def test_missing_and_wrong_files(app, tmp_path):
    out = _run(app, "export", tmp_path / "nope.pt")
    assert out.exit_code == 2 and "does not exist" in out.output
    (tmp_path / "m.txt").write_text("x")
    out = _run(app, "eval", tmp_path / "m.txt", "--data", tmp_path / "d.yaml")
    assert out.exit_code == 2 and "should end in .pt or .onnx or .engine" in out.output
    out = _run(app, "quantize", tmp_path / "m.onnx", "--data", tmp_path)
    assert out.exit_code == 2 and "Export one first" in out.output
    out = _run(app, "eval", tmp_path, "--data", tmp_path / "d.yaml")
    assert out.exit_code == 2 and f"model {tmp_path} is a folder, not a file" in out.output


def test_bad_values(app, tmp_path_factory, teacher_pt, tmp_path, coco8_yaml):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    out = _run(app, "build", onnx_path, "--batch", "1,2")
    assert out.exit_code == 2 and "min,opt,max" in out.output
    out = _run(app, "build", onnx_path)
    assert out.exit_code == 2 and "TensorRT is not installed" in out.output
    out = _run(app, "build", onnx_path, "-o", onnx_path)  # checked before TensorRT is looked for
    assert out.exit_code == 2 and "would overwrite the input" in out.output
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--method", "kl")
    assert out.exit_code == 2 and "calibration method" in out.output
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--val-split", "valid")
    assert out.exit_code == 2 and "--val-split must be val, train or test" in out.output
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--max-drop", "0.01", "--val-data", coco8_yaml,
               "--val-split", "test")  # a valid name the YAML lacks: refused before calibrating, with the splits
    assert out.exit_code == 2 and "has no 'test' split" in out.output and "it has train, val" in out.output
    out = _run(app, "bench", onnx_path, "--runs", "5")
    assert out.exit_code == 2 and ">= 50" in out.output
    out = _run(app, "export", tmp_path_factory.getbasetemp() / "exported" / "teacher.pt", "--imgsz", "100",
               "-o", tmp_path / "x.onnx")
    assert out.exit_code == 2 and "multiples of the model stride" in out.output


def test_quantize_reports_the_drop_with_its_interval_on_the_chosen_split(app, tmp_path_factory, teacher_pt, coco8_yaml,
                                                                       tmp_path):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    out = _run(app, "quantize", onnx_path, "--data", coco8_yaml, "-o", tmp_path / "q.onnx", "--max-drop", "1.0",
               "--val-data", coco8_yaml, "--val-split", "train")
    assert out.exit_code == 0, out.output
    assert "wrote" in out.output and (tmp_path / "q.onnx").is_file()
    assert "95% interval [" in out.output and "over 4 images" in out.output  # coco8's 4 train images


def test_an_output_path_that_would_lose_the_input_is_refused_before_any_work(app, tmp_path_factory, teacher_pt,
                                                                             tmp_path, coco8_yaml):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    before = onnx_path.read_bytes()
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "-o", onnx_path)
    assert out.exit_code == 2 and "would overwrite the input" in out.output
    assert onnx_path.read_bytes() == before  # the FP32 model is kept
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "-o", tmp_path)
    assert out.exit_code == 2 and "is a folder" in out.output
    pt = tmp_path_factory.getbasetemp() / "exported" / "teacher.pt"
    pt_bytes = pt.read_bytes()
    for target, message in ((pt, "would overwrite the input"), (tmp_path / "teacher.pt2", "should end in .onnx")):
        out = _run(app, "export", pt, "--imgsz", "64", "-o", target)
        assert out.exit_code == 2 and message in out.output, out.output
    assert pt.read_bytes() == pt_bytes and not (tmp_path / "teacher.pt2").exists()



def test_numbers_out_of_range_are_refused_naming_the_valid_range(app, tmp_path_factory, teacher_pt, tmp_path,
                                                                coco8_yaml):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    for args, message in ((("--val-limit", "0", "--max-drop", "0.01", "--val-data", coco8_yaml), "val_limit must be"),
                          (("--num-images", "0"), "num_images must be at least 1"),
                          (("--method", "percentile", "--percentile", "150"), "percentile must be in (0, 100]"),
                          (("--max-drop", "-1", "--val-data", coco8_yaml), "--max-drop")):
        out = _run(app, "quantize", onnx_path, "--data", coco8_yaml, "-o", tmp_path / "q.onnx", *args)
        assert out.exit_code == 2 and message in out.output, (args, out.output)
    assert not (tmp_path / "q.onnx").exists()
    out = _run(app, "eval", onnx_path, "--data", coco8_yaml, "--limit", "0")
    assert out.exit_code == 2 and "limit must be at least 1" in out.output
    pt = tmp_path_factory.getbasetemp() / "exported" / "teacher.pt"
    out = _run(app, "eval", pt, "--data", coco8_yaml, "--imgsz", "50")
    assert out.exit_code == 2 and "multiples of the model stride 32" in out.output
    for args, message in ((("--opset", "5"), "use 11-20"), (("--opset", "99"), "use 11-20"),
                          (("--opset", "11", "--nms"), "use 13-20")):
        out = _run(app, "export", pt, "--imgsz", "64", "-o", tmp_path / "o.onnx", *args)
        assert out.exit_code == 2 and f"--opset {args[1]} is not supported: {message}" in out.output, out.output
    assert not (tmp_path / "o.onnx").exists()


def test_an_engine_without_tensorrt_ends_in_one_line_saying_how_to_install_it(tmp_path, coco8_yaml):
    pytest.importorskip("cv2")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the engine would be opened")
    from detdistill.cli import app as full_app  # the real app: its error boundary turns the error into one line

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    for args in (("eval", engine, "--data", coco8_yaml), ("bench", engine)):
        out = _run(full_app, *args)
        assert out.exit_code == 2 and "error: TensorRT is not importable" in out.output, out.output
        assert "Traceback" not in out.output
