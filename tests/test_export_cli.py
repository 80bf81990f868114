"""The deploy verbs: help a newcomer can follow, and clear errors on bad input."""

from __future__ import annotations

import importlib.util
import re
import warnings

import pytest
import yaml
from typer.testing import CliRunner


VERBS = ("export", "quantize", "build", "eval", "bench")


@pytest.fixture(scope="module")
def app():
    from detdistill.cli import app  # the verbs inside the CLI's error boundary, as a user runs them

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
    assert out.exit_code == 2 and "Export one with `detdistill export`" in out.output
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
    assert out.exit_code == 2 and "--method must be one of minmax, entropy, percentile, got 'kl'" in out.output
    for args, words in ((("--target", "trt"), "--target must be one of tensorrt, cpu"),
                        (("--keep-float", "neck"), "--keep-float must be one of head-outputs, head"),
                        (("--scheme", "s8s8"), "--scheme must be one of u8s7, u8u8, u8s8"),
                        (("--max-drop", "0.01"), "--max-drop needs --val-data")):
        out = _run(app, "quantize", onnx_path, "--data", tmp_path, *args)
        assert out.exit_code == 2 and words in " ".join(out.output.split()), out.output
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--val-split", "valid")
    assert out.exit_code == 2 and "--val-split must be val, train or test" in out.output
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--max-drop", "0.01", "--val-data", coco8_yaml,
               "--val-split", "test")  # a valid name the YAML lacks: refused before calibrating, with the splits
    assert out.exit_code == 2 and "has no 'test' split" in out.output and "it has train, val" in out.output
    # options that would do nothing are refused, not ignored
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--val-data", coco8_yaml, "--val-split", "train")
    assert out.exit_code == 2 and "--val-data, --val-split: used only to measure" in out.output
    assert "--max-drop 0.01" in out.output
    out = _run(app, "quantize", onnx_path, "--data", tmp_path, "--percentile", "99.9")
    assert out.exit_code == 2 and "but the method is minmax: add --method percentile" in out.output
    pt = tmp_path_factory.getbasetemp() / "exported" / "teacher.pt"
    out = _run(app, "export", pt, "-o", tmp_path / "e.onnx", "--max-det", "100", "--nms-iou", "0.5")
    assert out.exit_code == 2 and "--max-det, --nms-iou: used only by the NMS in the graph" in out.output
    out = _run(app, "export", pt, "-o", tmp_path / "e.onnx", "--dynamic", "--batch", "4")
    assert out.exit_code == 2 and "--batch 4 would be ignored" in out.output and not (tmp_path / "e.onnx").exists()
    for args, bound in ((("--runs", "5"), "50"), (("--warmup", "-1"), "0")):
        out = _run(app, "bench", onnx_path, *args)  # the flag named, as typer names it, not bench()'s parameter
        text = " ".join(out.output.split())
        assert out.exit_code == 2 and f"Invalid value for '{args[0]}'" in text and bound in text, out.output
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
    for method in (["--method", "percentile", "--percentile", "99.9"], ["--method", "entropy"]):
        out = _run(app, "quantize", onnx_path, "--data", coco8_yaml, "-o", tmp_path / "p.onnx", *method)
        assert out.exit_code == 0 and "wrote" in out.output, out.output
        assert "Percentile :" not in out.output and "quantized bins" not in out.output  # ONNX Runtime's own prints


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
    # a folder of -o that is a file, or a folder that cannot be made: one error line, before the export
    from detdistill.cli import app as detdistill_app

    for target, message in ((pt / "x.onnx", f"-o {pt / 'x.onnx'}: {pt} is a file, not a folder"),
                            ("/proc/x.onnx", "cannot write /proc/x.onnx")):
        out = _run(detdistill_app, "export", pt, "--imgsz", "64", "-o", target)  # its error boundary, as users get
        assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output, out.output
    assert pt.read_bytes() == pt_bytes



def test_numbers_out_of_range_are_refused_naming_the_valid_range(app, tmp_path_factory, teacher_pt, tmp_path,
                                                                coco8_yaml):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    for args, message in ((("--val-limit", "0", "--max-drop", "0.01", "--val-data", coco8_yaml), "--val-limit"),
                          (("--num-images", "0"), "--num-images"),
                          (("--method", "percentile", "--percentile", "150"), "percentile must be in (0, 100]"),
                          (("--max-drop", "-1", "--val-data", coco8_yaml), "--max-drop")):
        out = _run(app, "quantize", onnx_path, "--data", coco8_yaml, "-o", tmp_path / "q.onnx", *args)
        assert out.exit_code == 2 and message in out.output, (args, out.output)
    assert not (tmp_path / "q.onnx").exists()
    out = _run(app, "eval", onnx_path, "--data", coco8_yaml, "--limit", "0")
    assert out.exit_code == 2 and "Invalid value for '--limit'" in " ".join(out.output.split()), out.output
    out = _run(app, "eval", onnx_path, "--data", coco8_yaml, "--int8", "bogus")
    assert out.exit_code == 2 and "--int8 must be one of auto, kernels, simulate, got 'bogus'" in out.output
    pt = tmp_path_factory.getbasetemp() / "exported" / "teacher.pt"
    out = _run(app, "eval", pt, "--data", coco8_yaml, "--imgsz", "50")
    assert out.exit_code == 2 and "multiples of the model stride 32" in out.output
    for verb in (("export", pt, "-o", tmp_path / "huge.onnx"), ("eval", pt, "--data", coco8_yaml)):
        out = _run(app, *verb, "--imgsz", "65536")  # refused before a 65536-pixel input exhausts the memory
        assert out.exit_code == 2 and "--imgsz" in out.output and "4096" in out.output, out.output
    for args, message in ((("--opset", "5"), "use 11-20"), (("--opset", "99"), "use 11-20"),
                          (("--opset", "11", "--nms"), "use 13-20")):
        out = _run(app, "export", pt, "--imgsz", "64", "-o", tmp_path / "o.onnx", *args)
        assert out.exit_code == 2 and f"--opset {args[1]} is not supported: {message}" in out.output, out.output
    assert not (tmp_path / "o.onnx").exists()


def test_the_opset_range_of_each_kind_of_graph():
    from detdistill.export.onnx_export import check_opset

    for opset, tails, qat in ((11, None, False), (13, "--nms", False), (13, None, True), (20, "--frame", True)):
        check_opset(opset, tails, qat)
    with pytest.raises(ValueError, match=r"--opset 12 is not supported for a quantization-aware \(--int8\) model: "
                                         r"its per-channel INT8 weights need opset 13-20"):
        check_opset(12, None, qat=True)
    with pytest.raises(ValueError, match=r"--opset 21 is not supported: use 13-20 \(--nms builds"):
        check_opset(21, "--nms", qat=True)
    with pytest.raises(ValueError, match=r"--opset 10 is not supported: use 11-20; 17"):
        check_opset(10, None)


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
        assert "Traceback" not in out.output and "--system-site-packages" in " ".join(out.output.split())


def test_eval_on_a_device_without_its_provider_ends_in_one_error_line(tmp_path_factory, teacher_pt, coco_mini_yaml):
    ort = pytest.importorskip("onnxruntime")
    from conftest import export_teacher
    from detdistill.cli import app as full_app  # the real app: its error boundary turns the error into one line

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    for device, provider in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        if provider in ort.get_available_providers():
            continue
        for verb in (("eval", onnx_path, "-d", coco_mini_yaml, "--limit", "4"), ("bench", onnx_path, "--runs", "50")):
            out = _run(full_app, *verb, "--device", device)
            assert out.exit_code == 2 and f"error: ONNX Runtime has no {provider} here" in out.output, out.output
            assert "--device cpu" in out.output and "Traceback" not in out.output


def test_an_empty_onnx_is_named_empty_by_every_verb_that_opens_it(app, tmp_path, coco8_yaml):
    empty = tmp_path / "w.onnx"
    empty.write_bytes(b"")  # an export or copy that stopped before writing anything
    for args in (("eval", empty, "-d", coco8_yaml), ("bench", empty), ("quantize", empty, "-d", coco8_yaml),
                 ("build", empty)):
        out = _run(app, *args)
        assert out.exit_code == 2 and f"error: model {empty} is empty (0 bytes" in out.output, (args, out.output)
        assert "export it again with `detdistill export`" in out.output
    from detdistill.runtime import Detector
    from detdistill.runtime.model_file import EmptyModelError

    with pytest.raises(EmptyModelError, match="is empty"):  # the API too, before ONNX Runtime's "No graph was found"
        Detector(empty, device="cpu")


def test_build_checks_its_option_values_before_looking_for_tensorrt(app, tmp_path_factory, teacher_pt):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    out = _run(app, "build", onnx_path, "--precision", "fp8")
    assert out.exit_code == 2 and "--precision must be one of fp32, fp16, int8, got 'fp8'" in out.output
    out = _run(app, "build", onnx_path, "--precision", "int8", "--calibrator", "kl")
    assert out.exit_code == 2 and "--calibrator must be one of entropy, minmax, got 'kl'" in out.output


def test_an_empty_path_option_is_refused_instead_of_meaning_the_current_folder(app, tmp_path_factory, teacher_pt,
                                                                              coco8_yaml, monkeypatch):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    monkeypatch.chdir(coco8_yaml.parent / "images" / "val")  # images here, which '' must not pick up
    for args, option in (((onnx_path, "-d", ""), "--data"), ((onnx_path, "--data", coco8_yaml, "--max-drop", "0.1",
                                                               "--val-data", ""), "--val-data")):
        out = _run(app, "quantize", *args)
        assert out.exit_code == 2 and f"error: {option} is empty: pass" in out.output, out.output
    for args, option in ((("bench", onnx_path, "--images", ""), "--images"),
                         (("export", teacher_pt, "--parity", ""), "--parity"),
                         (("eval", onnx_path, "-d", ""), "--data"),
                         (("build", onnx_path, "--calib", ""), "--calib")):
        out = _run(app, *args)
        assert out.exit_code == 2 and f"error: {option} is empty: pass" in out.output, out.output
        assert "current folder" in out.output


def _val_copy(coco8_yaml, dst, labels: bool = True):
    import shutil

    import yaml

    shutil.copytree(coco8_yaml.parent / "images" / "val", dst / "images" / "val")
    if labels:
        shutil.copytree(coco8_yaml.parent / "labels" / "val", dst / "labels" / "val",
                        ignore=shutil.ignore_patterns("*.cache"))
    (dst / "data.yaml").write_text(yaml.safe_dump({"val": "images/val",
                                                   "names": yaml.safe_load(coco8_yaml.read_text())["names"]}))
    return dst / "data.yaml"


def test_eval_names_bad_labels_a_missing_labels_folder_and_a_split_the_yaml_lacks(app, tmp_path_factory, teacher_pt,
                                                                                 coco8_yaml, tmp_path):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    data = _val_copy(coco8_yaml, tmp_path / "four")
    label = sorted((tmp_path / "four" / "labels" / "val").glob("*.txt"))[0]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1\n")  # 4 columns: was an IndexError
    out = _run(app, "eval", onnx_path, "-d", data, "--limit", "1")
    assert out.exit_code == 2 and f"error: {label} line " in out.output, out.output
    assert "'class x_center y_center width height'" in out.output
    nolabels = _val_copy(coco8_yaml, tmp_path / "nolabels", labels=False)
    out = _run(app, "eval", onnx_path, "-d", nolabels, "--limit", "2")  # was mAP 0.0000 "(2 images, 0 instances)"
    assert out.exit_code == 2 and "no label file for any of the 4 images of split 'val'" in out.output, out.output
    assert str(tmp_path / "nolabels" / "labels" / "val") in out.output.replace("\n", "")
    partial = _val_copy(coco8_yaml, tmp_path / "partial")
    for label in sorted((tmp_path / "partial" / "labels" / "val").glob("*.txt"))[:2]:
        label.unlink()
    out = _run(app, "eval", onnx_path, "-d", partial)  # scored as background images without a word before
    assert out.exit_code == 0 and "(4 images, 2 of them without a label file, so background, " in out.output
    images = sorted((tmp_path / "partial" / "images" / "val").glob("*.jpg"))
    images[3].write_bytes(images[3].read_bytes()[:4000])  # its labels count: scored as OpenCV decodes it, and said
    out = _run(app, "eval", onnx_path, "-d", partial)
    assert out.exit_code == 0 and "2 of them without a label file, so background, 1 of them truncated, scored with " \
        "the missing part grey, " in out.output, out.output
    images[2].write_bytes(b"not an image")
    out = _run(app, "eval", onnx_path, "-d", partial)
    assert out.exit_code == 2 and f"error: cannot score {images[2]}: not an image OpenCV can decode; replace the " \
        "file, or remove it and its label file" in out.output.replace("\n", ""), out.output
    out = _run(app, "eval", onnx_path, "-d", coco8_yaml, "--split", "test")
    assert out.exit_code == 2 and f"error: {coco8_yaml} has no 'test' split (it has train, val)" in out.output
    assert '"' not in out.output


def test_a_binary_data_yaml_is_named_by_every_verb(app, tmp_path_factory, teacher_pt, tmp_path):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    binary = tmp_path / "data.yaml"
    binary.write_bytes(b"\xff\xd8\xff\xe0 a JPEG saved as data.yaml")
    for args in (("eval", onnx_path, "-d", binary), ("quantize", onnx_path, "-d", binary),
                 ("bench", onnx_path, "--images", binary, "--device", "cpu"),
                 ("export", teacher_pt, "--parity", binary, "-o", tmp_path / "x.onnx")):
        out = _run(app, *args)
        assert out.exit_code == 2 and f"error: {binary} is not a text data YAML (byte 0xff" in out.output, out.output
    assert not (tmp_path / "x.onnx").exists()


def test_eval_warns_when_the_model_predicts_other_classes_than_the_data(app, tmp_path_factory, teacher_pt,
                                                                       vehicles_yaml, coco8_yaml, tmp_path):
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    out = _run(app, "eval", onnx_path, "-d", vehicles_yaml, "--limit", "2")
    assert out.exit_code == 0 and "mAP50-95" in out.output  # still scored (a teacher scored raw on purpose)
    text = " ".join(out.output.split())
    assert f"warning: the model predicts 80 classes and {vehicles_yaml} has 5" in text, text
    assert "person as Ambulance" in text and "class_map=" in text
    out = _run(app, "eval", onnx_path, "-d", coco8_yaml, "--limit", "1")
    assert out.exit_code == 0 and "warning" not in out.output
    names = yaml.safe_load(coco8_yaml.read_text())["names"]
    names[0], names[1] = names[1], names[0]  # the same 80 classes, two of them in each other's place
    swapped = tmp_path / "swapped.yaml"
    swapped.write_text(yaml.safe_dump({"path": str(coco8_yaml.parent), "train": "images/train", "val": "images/val",
                                       "names": names}))
    out = _run(app, "eval", onnx_path, "-d", swapped, "--limit", "1")
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and "mAP50-95" in text, text
    assert f"warning: the model and {swapped} name their 80 classes differently (person as bicycle, bicycle as " \
           "person): class ids are scored by position" in text, text
    for fatal in (("--split", "nosuch"), ("--rect",)):  # a fatal error comes alone, without the class warning
        out = _run(app, "eval", onnx_path, "-d", vehicles_yaml, *fatal)
        assert out.exit_code != 0 and "error:" in out.output and "warning" not in out.output, out.output
    from detdistill.export.evaluate import evaluate

    with pytest.warns(UserWarning, match=f"the model predicts 80 classes and {re.escape(str(vehicles_yaml))} has 5"):
        evaluate(onnx_path, vehicles_yaml, limit=1)  # from Python too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(onnx_path, vehicles_yaml, limit=1, class_map={2: 2})


def test_eval_scores_a_coco_teacher_on_a_subset_through_a_class_map(app, tmp_path_factory, teacher_pt,
                                                                    vehicles_yaml, coco8_yaml):
    """`eval --class-map auto` follows the data YAML's coco_classes block, as evaluate(class_map=...) in Python and
    the pipeline do; the CLI text form names dataset classes = model classes; a bad map is one error line."""
    from conftest import export_teacher
    from detdistill.export.evaluate import UnmappedClassesWarning, evaluate

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    with pytest.warns(UnmappedClassesWarning, match=r"maps no model class to Ambulance \(\d+ boxes\): with no "
                      "detections, it scores AP 0"):  # COCO has no ambulance: the CLI's note says it, Python warns
        python = evaluate(onnx_path, vehicles_yaml, limit=40, class_map={5: 1, 2: 2, 3: 3, 7: 4})  # bus car moto truck
    with pytest.warns(UnmappedClassesWarning, match=r"Ambulance \(\d+ boxes\), Motorcycle \(\d+ boxes\), Truck"):
        partial = evaluate(onnx_path, vehicles_yaml, limit=40, class_map={"car": "Car", "bus": "Bus"})
    assert partial.map50_95 < python.map50_95 - 0.05  # what the warning is for: three classes at AP 0
    for spec in ("auto", "Ambulance=;Bus=bus;Car=car;Motorcycle=motorcycle;Truck=truck"):
        out = _run(app, "eval", onnx_path, "-d", vehicles_yaml, "--limit", "40", "--class-map", spec)
        text = " ".join(out.output.split())
        assert out.exit_code == 0 and f"mAP50-95 {python.map50_95:.4f}" in text, (text, python.summary())
        assert "warning" not in text and "Bus <- bus" in text and "Truck <- truck" in text, text
        assert "Ambulance <- (none: AP 0)" in text and "Car <- car;" in text, text  # car and truck: their own classes
    raw = _run(app, "eval", onnx_path, "-d", vehicles_yaml, "--limit", "40")
    assert f"mAP50-95 {python.map50_95:.4f}" not in raw.output and "--class-map auto" in " ".join(raw.output.split())
    out = _run(app, "eval", onnx_path, "-d", coco8_yaml, "--limit", "1", "--class-map", "auto")
    assert out.exit_code == 0 and "the model's classes are the dataset's" in out.output, out.output
    out = _run(app, "eval", onnx_path, "-d", vehicles_yaml, "--limit", "1", "--class-map", "Bus=autobus")
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "error: the model has no class named 'autobus'" in text, text
    assert "Traceback" not in out.output
    out = _run(app, "eval", onnx_path, "-d", vehicles_yaml, "--limit", "1", "--class-map", "Bus=bus")
    text = " ".join(out.output.split())  # Ambulance matches no COCO class by name: named in scoring's words
    assert out.exit_code == 2 and "dataset class(es) ['Ambulance'] match no model class" in text, text
    assert "'Ambulance=' to score it with no model class" in text and "distil" not in text, text
    out = _run(app, "eval", onnx_path, "-d", vehicles_yaml, "--limit", "1", "--class-map", "garbage")
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "entry 'garbage' must look like 'dataset=model[,model...]'" in text, text


def test_eval_of_a_pt_takes_rect_and_checks_its_device_and_int8_choice(app, tmp_path_factory, teacher_pt, coco8_yaml):
    """`eval --rect` scores a .pt as evaluate(pt, rect=True) does (it was refused: the CLI passes an opened model);
    a device PyTorch cannot use, and an --int8 choice for a model without Q/DQ pairs, are refused."""
    import torch
    from conftest import export_teacher

    from detdistill.export.evaluate import evaluate

    out = _run(app, "eval", teacher_pt, "-d", coco8_yaml, "--imgsz", "320", "--rect")
    assert out.exit_code == 0, out.output
    expected = evaluate(teacher_pt, coco8_yaml, imgsz=320, rect=True).map50_95
    square = evaluate(teacher_pt, coco8_yaml, imgsz=320).map50_95
    assert f"mAP50-95 {expected:.4f}" in out.output and f"{expected:.4f}" != f"{square:.4f}"
    out = _run(app, "eval", teacher_pt, "-d", coco8_yaml, "--device", "bogus")
    assert out.exit_code == 2 and "device 'bogus': a .pt runs in PyTorch, on cpu, cuda, auto" in out.output
    if not torch.cuda.is_available():  # was scored on the CPU without a word
        out = _run(app, "eval", teacher_pt, "-d", coco8_yaml, "--device", "cuda")
        assert out.exit_code == 2 and "PyTorch sees no CUDA GPU here" in out.output, out.output
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    for model in (onnx_path, teacher_pt):
        out = _run(app, "eval", model, "-d", coco8_yaml, "--int8", "kernels", "--limit", "1")
        assert out.exit_code == 2 and f"int8='kernels' (--int8 kernels) chooses how an INT8 (Q/DQ) ONNX runs, and " \
            f"{model.name} is not one: leave it at 'auto' (drop --int8)" in out.output.replace("\n", ""), out.output
        with pytest.raises(ValueError, match=r"int8='kernels' \(--int8 kernels\) chooses how"):
            evaluate(model, coco8_yaml, int8="kernels", limit=1)  # from Python too


def test_bench_names_the_frames_it_left_out(app, tmp_path_factory, teacher_pt, coco8_yaml, tmp_path):
    import shutil

    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(sorted((coco8_yaml.parent / "images" / "val").glob("*.jpg"))[0], frames / "a.jpg")
    (frames / "b.jpg").write_bytes(b"\xff\xd8 cut off")
    out = _run(app, "bench", onnx_path, "--images", frames, "--runs", "50", "--warmup", "0")
    assert out.exit_code == 0, out.output  # timed on the one good frame, and says so (it was silent)
    assert "note: skipped 1 of 2 frames that cannot be used (first: " in out.output and "b.jpg" in out.output


def test_quantize_says_what_stays_in_float_and_warns_of_a_budget_on_other_classes(app, tmp_path_factory, teacher_pt,
                                                                                  vehicles_yaml, coco_mini_yaml,
                                                                                  tmp_path):
    """The summary tells --keep-float head-outputs from head; a --max-drop budget measured on a dataset of other
    classes than the model's is warned about (its mAP is the class ids scored by position)."""
    from conftest import export_teacher

    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    images = coco_mini_yaml.parent / "images" / "val"
    common = ("--num-images", "2", "--max-drop", "1", "--val-limit", "2", "--val-split", "val")
    out = _run(app, "quantize", onnx_path, "--data", images, "-o", tmp_path / "a.onnx", "--val-data", vehicles_yaml,
               *common)
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and "in float: the head's outputs (last convolutions, DFL, decode))" in text, text
    assert f"warning: --max-drop measures the drop on {vehicles_yaml}, whose classes are not the model's (the " \
           "model predicts 80 classes" in text, text
    assert text.count("the model predicts 80 classes") == 1 and "--class-map auto" not in text, text  # not eval's
    out = _run(app, "quantize", onnx_path, "--data", images, "-o", tmp_path / "b.onnx", "--keep-float", "head",
               "--val-data", coco_mini_yaml, *common)
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and "in float: the whole head)" in text and "warning: --max-drop" not in text, text


def test_export_and_val_take_the_size_a_pt_was_trained_at_unless_told(app, teacher_pt, coco8_yaml, tmp_path):
    """As ultralytics' export and YOLO(path).val() take it: a student trained at 160 is not exported at 640."""
    import onnx
    import torch

    ckpt = torch.load(teacher_pt, map_location="cpu", weights_only=False)
    ckpt["train_args"]["imgsz"] = 150  # ultralytics trains it at 160, the next multiple of the stride
    torch.save(ckpt, tmp_path / "small.pt")

    def input_hw(path):
        return [d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim][2:]

    out = CliRunner().invoke(app, ["export", str(tmp_path / "small.pt"), "-o", str(tmp_path / "a.onnx")],
                             terminal_width=300)
    assert out.exit_code == 0 and input_hw(tmp_path / "a.onnx") == [160, 160], out.output
    assert "note: exported at 160 px (the size small.pt was trained at, else 640" in out.output
    out = CliRunner().invoke(app, ["export", str(tmp_path / "small.pt"), "-o", str(tmp_path / "b.onnx"),
                                   "--imgsz", "96"], terminal_width=300)
    assert out.exit_code == 0 and input_hw(tmp_path / "b.onnx") == [96, 96] and "note:" not in out.output
    out = CliRunner().invoke(app, ["val", str(tmp_path / "small.pt"), "--data", str(coco8_yaml), "--device", "cpu"],
                             terminal_width=300)
    assert out.exit_code == 0 and "note: small.pt is validated at 160 px" in out.output, out.output
