"""One error boundary for every verb: bad input ends in exactly one ``error:`` line naming the file or
argument, a non-zero exit and no traceback; Ctrl-C says how to go on; broken imports fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from detdistill import cli
from detdistill.cli import app


def _invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=300)


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _assert_one_error(result, *names: str) -> str:
    """Exit != 0 through the boundary (SystemExit, not an escaped exception), one `error:` line naming ``names``."""
    assert result.exit_code != 0, result.output
    assert type(result.exception) is SystemExit, repr(result.exception)
    assert "Traceback" not in result.output
    lines = _error_lines(result.output)
    assert len(lines) == 1, result.output
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, teacher_pt) -> dict[str, Path]:
    """A checkpoint cut after 2 KB (as a copy or a save killed midway leaves it) and an ONNX of random bytes."""
    tmp = tmp_path_factory.mktemp("bad")
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(teacher_pt.read_bytes()[:2048])
    noise = tmp / "noise.onnx"
    noise.write_bytes(os.urandom(4096))
    return {"pt": truncated, "onnx": noise}


def _recipe(tmp: Path, teacher_pt: Path, **changes) -> Path:
    """A pipeline recipe on a data YAML that does not exist, so `run` stops at its first stage."""
    recipe = {"name": "t", "imgsz": 64, "data": {"yaml": str(tmp / "absent-data.yaml")},
              "teacher": {"weights": str(teacher_pt)}, "student": {"model": "yolov8n.yaml"}, **changes}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


# verb, arguments (PT/ONNX/COCO8 filled in), what the error line must name
CORRUPT_INPUTS = [
    ("val", ["PT", "--data", "COCO8"], "truncated.pt"),
    ("export", ["PT"], "truncated.pt"),
    ("train", ["--resume", "PT"], "truncated.pt"),
    ("eval", ["ONNX", "--data", "COCO8"], "noise.onnx"),
    ("bench", ["ONNX", "--runs", "50"], "noise.onnx"),
    ("quantize", ["ONNX", "--data", "COCO8"], "noise.onnx"),
]


@pytest.mark.parametrize("verb,args,named", CORRUPT_INPUTS, ids=[f"{v}-{n}" for v, _, n in CORRUPT_INPUTS])
def test_a_corrupt_file_gives_one_error_line(verb, args, named, bad_files, coco8_yaml):
    fill = {"PT": bad_files["pt"], "ONNX": bad_files["onnx"], "COCO8": coco8_yaml}
    line = _assert_one_error(_invoke(verb, *[fill.get(a, a) for a in args]), named)
    assert ("checkpoint" if named.endswith(".pt") else "ONNX") in line


@pytest.mark.parametrize("content", [b"", b'{\n "data": {\n  "key": "3f2a'], ids=["empty", "half-written"])
def test_run_sets_a_damaged_stages_json_aside_instead_of_a_traceback(tmp_path, teacher_pt, content):
    work = tmp_path / "work"
    work.mkdir()
    (work / "stages.json").write_bytes(content)
    result = _invoke("run", _recipe(tmp_path, teacher_pt), "--workdir", work)
    _assert_one_error(result, "absent-data.yaml")  # the run went on to its first stage
    assert "JSONDecodeError" not in result.output and "warning:" in result.output
    assert [p.read_bytes() for p in work.glob("stages.json.damaged-*")] == [content]


def test_a_misspelt_training_argument_is_named_with_the_closest_valid_one(tmp_path, teacher_pt, coco8_yaml):
    result = _invoke("train", "--teacher", teacher_pt, "--student", "yolov8n.yaml", "--data", coco8_yaml, "epoch=1")
    line = _assert_one_error(result, "'epoch'", "'epochs'")
    assert line == "error: unknown training argument 'epoch' (did you mean 'epochs'?)"

    result = _invoke("run", _recipe(tmp_path, teacher_pt, train={"epochs": 1, "lr": 0.01}))
    _assert_one_error(result, "'lr'", "train:")  # checked before the first stage (the data YAML is absent)


def test_a_recipe_that_is_not_yaml_is_named(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\ndata: [1\n")
    _assert_one_error(_invoke("run", recipe), "broken.yaml", "YAML")


def test_ctrl_c_says_how_to_go_on(tmp_path, monkeypatch, teacher_pt):
    from detdistill.distill import api
    from detdistill.pipeline import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_pipeline", interrupted)
    recipe = _recipe(tmp_path, teacher_pt)
    result = _invoke("run", recipe, "--workdir", tmp_path / "w")
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "interrupted" in result.output and f"detdistill run {recipe} --workdir {tmp_path / 'w'}" in result.output

    last = tmp_path / "runs" / "kd" / "weights" / "last.pt"
    monkeypatch.setattr(api, "resume_config", lambda path: {})
    monkeypatch.setattr(api, "resume", interrupted)
    result = _invoke("train", "--resume", last)
    assert result.exit_code == 130 and f"detdistill train --resume {last}" in result.output


def test_the_console_script_reports_one_line_and_debug_shows_the_traceback(bad_files):
    command = [sys.executable, "-c", "from detdistill.cli import app; app()", "bench", str(bad_files["onnx"])]
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    env.pop("DETDISTILL_DEBUG", None)
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert len(_error_lines(quiet.stderr)) == 1 and "noise.onnx" in quiet.stderr
    loud = subprocess.run(command, capture_output=True, text=True, env={**env, "DETDISTILL_DEBUG": "1"}, timeout=120)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "InvalidProtobuf" in loud.stderr


def test_verb_registration_fails_loudly_on_a_broken_own_import(tmp_path, monkeypatch, capsys):
    (tmp_path / "needs_missing_dep.py").write_text("import detdistill_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "VERB_MODULES", ("needs_missing_dep",))
    cli._register_optional()  # a missing third-party package skips the verbs, saying what to install
    assert "detdistill_test_absent_dependency is not installed (pip install" in capsys.readouterr().err

    monkeypatch.setattr(cli, "VERB_MODULES", ("detdistill.export.no_such_cli",))
    with pytest.raises(ModuleNotFoundError):
        cli._register_optional()


def _real_error(kind: str, path: Path) -> BaseException:
    """The exception the library meets reading a bad file of ``kind`` at ``path``."""
    import json

    import cv2
    import numpy as np

    try:
        if kind == "json":
            path.write_text('{"teacher": {"key": "3f')
            json.loads(path.read_text())
        elif kind == "yaml":
            path.write_text("names: [car, bus\n")
            yaml.safe_load(path.read_text())
        elif kind == "image":
            path.write_bytes(b"")
            cv2.cvtColor(np.zeros((0, 0, 3), np.uint8), cv2.COLOR_BGR2RGB)
        else:
            from ultralytics.cfg import get_cfg

            get_cfg(overrides={"epoch": 1})
    except Exception as e:  # noqa: BLE001 - the point is to catch what the library raises
        return e
    raise AssertionError(f"no error for {kind}")


@pytest.mark.parametrize("kind,name,words", [
    ("json", "calib.json", "not valid JSON"), ("yaml", "data.yaml", "not valid YAML"),
    ("image", "frame.jpg", "OpenCV"), ("args", "'epoch'", "training argument"),
])
def test_error_lines_for_json_yaml_opencv_and_ultralytics_argument_errors(tmp_path, kind, name, words):
    from detdistill.cli_errors import error_line

    path = tmp_path / name.strip("'")
    exc = _real_error(kind, path)
    line = error_line(exc, ["eval", str(path)])
    assert line is not None and "\n" not in line and name in line and words in line, line


def test_other_errors_keep_their_traceback():
    from detdistill.cli_errors import error_line

    assert error_line(ZeroDivisionError("division by zero"), ["eval"]) is None
    assert error_line(KeyError("boxes"), ["eval"]) is None


def test_a_work_folder_that_is_not_a_pipelines_is_refused_and_kept(tmp_path, teacher_pt):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    _assert_one_error(_invoke("run", _recipe(tmp_path, teacher_pt), "--workdir", mine), "mine", "no stages.json")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes"
    (tmp_path / "a-file").write_text("x")
    for verb in (("run", _recipe(tmp_path, teacher_pt)), ("quickstart", "--tiny")):
        _assert_one_error(_invoke(*verb, "--workdir", tmp_path / "a-file"), "a-file", "is a file")
        _assert_one_error(_invoke(*verb, "--workdir", tmp_path / "a-file" / "run"), "cannot create the work folder",
                          "choose a folder you can write")
        _assert_one_error(_invoke(*verb, "--workdir", ""), "--workdir is empty")  # was: the current folder
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    _assert_one_error(_invoke("run", binary), "binary.yaml", "not a text file")


def test_a_bad_class_map_in_a_pipeline_fails_before_the_student_without_kd_trains(tmp_path, teacher_pt, coco8_yaml):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "t", "imgsz": 64, "data": {"yaml": str(coco8_yaml)}, "teacher": {"weights": str(teacher_pt)},
        "student": {"model": "yolov8n.yaml"}, "train": {"epochs": 1},
        "distill": {"class_map": {"person": ["spaceship"]}}}))
    work = tmp_path / "work"
    _assert_one_error(_invoke("run", recipe, "--workdir", work), "no class named 'spaceship'")
    assert not (work / "student-no-kd").exists()  # nothing trained


def test_training_values_ultralytics_refuses_are_named_before_any_work(tmp_path, teacher_pt, coco8_yaml):
    for value, words in (("epochs=-1", ("'epochs=-1'", ">= 1")), ("epochs=abc", ("'epochs=abc'", "must be an int"))):
        result = _invoke("train", "--teacher", teacher_pt, "--student", "yolov8n.yaml", "--data", coco8_yaml, value)
        _assert_one_error(result, "invalid training argument", *words)
    result = _invoke("run", _recipe(tmp_path, teacher_pt, train={"epochs": "abc"}))
    _assert_one_error(result, "in the recipe's train: section", "'epochs=abc'")
    result = _invoke("run", _recipe(tmp_path, teacher_pt, train={"epochs": 1, "data": "other.yaml"}))
    _assert_one_error(result, "train: data is not a training setting of a pipeline", "the data: section")
    result = _invoke("run", _recipe(tmp_path, teacher_pt, train={"imgsz": 128}))  # the students train at imgsz:
    _assert_one_error(result, "train: imgsz is not a training setting of a pipeline", "the top-level imgsz:")
    for key, option in (("model=yolov8s.yaml", "--student"), ("data=other.yaml", "--data"),
                        ("distill_model=yolov8s.pt", "--teacher"), ("quantize=8", "--int8")):
        result = _invoke("train", "--teacher", teacher_pt, "--student", "yolov8n.yaml", "--data", coco8_yaml, key)
        _assert_one_error(result, f"{key} is set by {option}", "use that option instead")
    from detdistill.distill import api
    from detdistill.distill.trainer import RESERVED_TRAIN_KEYS

    for key in sorted(RESERVED_TRAIN_KEYS):  # every key detdistill sets itself, by every way in
        result = _invoke("train", "--teacher", teacher_pt, "--student", "yolov8n.yaml", "--data", coco8_yaml,
                         f"{key}=x")
        _assert_one_error(result, f"{key}=x is set by --", "use that option instead")
        if key != "data":  # train()'s own parameter: Python itself refuses a second one
            with pytest.raises(ValueError, match=rf"{key}='x' is set by train\(\)'s "):
                api.train("yolov8n.yaml", teacher_pt, coco8_yaml, **{key: "x"})
        result = _invoke("run", _recipe(tmp_path, teacher_pt, train={"epochs": 1, key: "x"}))
        _assert_one_error(result, f"train: {key} is not a training setting of a pipeline", "it is set by")
    # found before the first stage (the data YAML here does not exist), not after the teacher's stages
    for student, *words in (({"model": "yolov8q.yaml"}, "student.model: student model config 'yolov8q.yaml' not found"),
                            ({"model": str(coco8_yaml)}, "student.model: student", "is not a model YAML"),
                            ({"weights": str(tmp_path / "nope.pt")}, "student.weights: student checkpoint", "nope.pt"),
                            ({"width": 0.25, "freeze_bn": True}, "drop student.freeze_bn")):
        _assert_one_error(_invoke("run", _recipe(tmp_path, teacher_pt, student=student)), *words)
    result = _invoke("run", _recipe(tmp_path, teacher_pt, teacher={"train": {"model": "yolov8q.yaml", "epochs": 1}}))
    _assert_one_error(result, "teacher.train.model: teacher model config 'yolov8q.yaml' not found")
    result = _invoke("run", _recipe(tmp_path, teacher_pt, data={"yaml": str(coco8_yaml),
                                                                "unlabeled": str(tmp_path / "frames")}))
    _assert_one_error(result, "data.unlabeled:", "frames does not exist")
    result = _invoke("run", _recipe(tmp_path, teacher_pt, device="7"))  # no machine here has eight GPUs
    _assert_one_error(result, "device=7 (the recipe's device:)", "Invalid CUDA")
    result = _invoke("train", "--teacher", teacher_pt, "--student", "yolov8n.yaml", "--data", coco8_yaml, "device=7")
    _assert_one_error(result, "device=7", "Invalid CUDA")


def test_run_check_finds_what_a_run_would_refuse_and_writes_nothing(tmp_path, teacher_pt, coco8_yaml, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = _recipe(tmp_path, teacher_pt, data={"yaml": str(coco8_yaml)})
    result = _invoke("run", good, "--check")
    assert result.exit_code == 0 and "no problem found" in result.output, result.output
    assert f"a run would work in {tmp_path / 'runs' / 'pipeline' / 't'}" in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()  # nothing written, not even the work folder
    for changes, words in (({}, ("data.yaml:", "absent-data.yaml does not exist")),
                           ({"data": {"yaml": "absent.yaml"}}, ("data.yaml: absent.yaml does not exist",
                                                                f"read from the folder you run in, {tmp_path}")),
                           ({"data": {"yaml": str(coco8_yaml)}, "teacher": {"weights": str(tmp_path / "t.pt")}},
                            ("teacher.weights:", "t.pt' does not exist")),
                           ({"data": {"yaml": str(coco8_yaml)}, "student": {"model": "yolov8q.yaml"}},
                            ("student.model: student model config 'yolov8q.yaml' not found",)),
                           ({"data": {"yaml": str(coco8_yaml)}, "train": {"epoch": 3}},
                            ("unknown training argument 'epoch'", "did you mean 'epochs'"))):
        _assert_one_error(_invoke("run", _recipe(tmp_path, teacher_pt, **changes), "--check"), *words)
    assert not (tmp_path / "runs").exists()


def test_run_check_opens_the_teacher_and_the_data_as_their_stages_would(tmp_path, teacher_pt, coco8_yaml, bad_files,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty, no_names, bad_yaml = tmp_path / "empty.pt", tmp_path / "no-names.yaml", tmp_path / "broken.yaml"
    empty.touch()
    no_names.write_text(f"path: {coco8_yaml.parent}\ntrain: images/train\nval: images/val\n")
    bad_yaml.write_text("path: [unclosed\ntrain: images\n")
    data = {"yaml": str(coco8_yaml)}
    distill = {"recipe": "default", "baseline": True}
    for changes, words in (
            ({"teacher": {"weights": str(empty)}}, ("teacher.weights:", "empty.pt is empty (0 bytes)")),
            ({"teacher": {"weights": str(bad_files["pt"])}},
             ("teacher.weights:", "truncated.pt", "truncated or corrupted", "copy it again")),
            ({"data": {"yaml": str(no_names)}}, ("data.yaml:", "no-names.yaml", "'names' or 'nc' are required")),
            ({"data": {"yaml": str(bad_yaml)}}, ("data.yaml:", "broken.yaml", "YAML syntax error")),
            ({"distill": {**distill, "class_map": {"person": "lorry"}}}, ("distill.class_map:", "no class named 'lorry'")),
            ({"workdir": str(teacher_pt.parent / teacher_pt.name / "sub")}, ("is a file, not a folder",)),
            ({"workdir": "/proc/detdistill-work"}, ("cannot create the work folder /proc/detdistill-work",))):
        recipe = _recipe(tmp_path, teacher_pt, **{"data": data, "distill": distill, **changes})
        line = _assert_one_error(_invoke("run", recipe, "--check"), *words)
        assert "download" not in line and "Verify YAML" not in line  # ultralytics' advice, which fixes nothing here
    assert not (tmp_path / "runs").exists() and not list(Path("/proc").glob(".detdistill-check-*"))


def test_run_check_downloads_nothing_and_names_what_the_run_would_download(tmp_path, teacher_pt, coco8_yaml,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    marker = tmp_path / "download-ran"
    data = yaml.safe_load(coco8_yaml.read_text())
    fetched = tmp_path / "fetched.yaml"  # images not here yet; ultralytics would run the download: script
    fetched.write_text(yaml.safe_dump({**data, "path": str(tmp_path / "not-yet"),
                                       "download": f"import pathlib; pathlib.Path({str(marker)!r}).touch()"}))
    result = _invoke("run", _recipe(tmp_path, teacher_pt, data={"yaml": str(fetched)}), "--check")
    output = " ".join(result.output.split())
    assert result.exit_code == 0 and "no problem found" in output, result.output
    assert "note: data.yaml: its images are not on this machine; the run gets them with the YAML's download:" in output
    assert not marker.exists() and not (tmp_path / "runs").exists()
    missing = tmp_path / "missing.yaml"  # no download: entry: an error, as before
    missing.write_text(yaml.safe_dump({**data, "path": str(tmp_path / "not-yet")}))
    _assert_one_error(_invoke("run", _recipe(tmp_path, teacher_pt, data={"yaml": str(missing)}), "--check"),
                      "data.yaml:", "images not found")
    monkeypatch.setenv("DETDISTILL_WEIGHTS", str(tmp_path / "no-weights-here"))
    monkeypatch.setattr("detdistill.registry.weights._ultralytics_weights_dir", lambda: tmp_path / "nor-here")
    line = _assert_one_error(_invoke("run", _recipe(tmp_path, teacher_pt, data={"yaml": str(coco8_yaml)},
                                                    teacher={"weights": "yolov8s"}), "--check"),
                             "teacher.weights:", "'yolov8s' not found")
    assert "YOLO_OFFLINE=1" in line and "download=False" not in line  # the reason a run would give


def test_val_and_eval_name_the_wrong_model_kind_and_a_malformed_names_key(tmp_path, teacher_pt, coco8_yaml):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"x")
    _assert_one_error(_invoke("val", onnx_path, "--data", coco8_yaml), "not a .pt checkpoint", "detdistill eval")
    data = yaml.safe_load(coco8_yaml.read_text())
    bad = tmp_path / "names-as-text.yaml"
    bad.write_text(yaml.safe_dump({**data, "path": str(coco8_yaml.parent / data.get("path", "")), "names": "person"}))
    _assert_one_error(_invoke("eval", teacher_pt, "--data", bad, "--imgsz", "64"), "names-as-text.yaml",
                      "'names' must be a list")


def test_a_warning_of_detdistill_prints_as_one_line(tmp_path_factory, teacher_pt):
    from conftest import export_teacher

    model = export_teacher(tmp_path_factory, teacher_pt, "teacher320-nms.onnx", nms=True)
    result = _invoke("demo", "-m", model, "-s", "synthetic?frames=2", "--no-show", "--iou", "0.5")
    assert result.exit_code == 0, result.output
    assert "warning: this model runs NMS in its graph at IoU 0.7; iou=0.5 does not apply" in result.output
    assert "UserWarning" not in result.output and "warnings.warn" not in result.output


def test_ctrl_c_while_the_command_starts_is_one_line():
    """A Ctrl-C while the verbs' packages load (torch, cv2: a second or more) ended in a traceback."""
    code = ("import importlib.abc, sys\n"
            "class Interrupt(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'detdistill.cli':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from detdistill.__main__ import main\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and done.stderr == "interrupted while starting\n", done.stderr


def _main_without(package: str, argv: list[str], error: str = "ModuleNotFoundError(f\"No module named '{name}'\", "
                  "name=name)") -> subprocess.CompletedProcess:
    """``detdistill ARGV`` in a Python where importing ``package`` (or a submodule) raises ``error``."""
    code = ("import importlib.abc, sys\n"
            "class Missing(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] == {package!r}:\n"
            f"            raise {error}\n"
            "sys.meta_path.insert(0, Missing())\n"
            f"sys.argv = ['detdistill', *{[str(a) for a in argv]!r}]\n"
            "from detdistill.__main__ import main\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    return lines[0]


def test_a_python_without_opencv_gets_one_line_naming_the_extra_and_the_jetson_way():
    """The base install with no cv2 (a Jetson venv made without --system-site-packages): every verb, --help included,
    ended in a traceback from the CLI's imports."""
    line = _one_error_line(_main_without("cv2", ["--help"]))
    assert line.startswith("error: detdistill needs OpenCV (the cv2 module)") and \
        "pip install 'detdistill[runtime]'" in line and "--system-site-packages" in line
    # installed, but a library it links is missing (a slim container without libGL)
    line = _one_error_line(_main_without("cv2", ["--help"], "ImportError('libGL.so.1: cannot open shared object "
                                                            "file: No such file or directory', name='cv2')"))
    assert line.startswith("error: OpenCV (cv2) is installed but does not load (libGL.so.1: cannot open") and \
        "apt-get install libgl1" in line


def test_missing_packages_of_a_jetson_install_are_one_line(tmp_path_factory, teacher_pt, coco8_yaml, tmp_path):
    """A Jetson's layouts: onnx for `build` but no onnxruntime (quantize ended in a chained traceback), or neither
    (build named the export extra, whose pip onnxruntime a Jetson does not want)."""
    from conftest import export_teacher

    model = export_teacher(tmp_path_factory, teacher_pt)
    line = _one_error_line(_main_without("onnxruntime", ["quantize", model, "--data", coco8_yaml, "--target",
                                                         "tensorrt", "-o", tmp_path / "q.onnx"]))
    assert "INT8 quantization needs onnxruntime" in line and "pip install" in line
    line = _one_error_line(_main_without("onnx", ["build", model, "-o", tmp_path / "m.engine"]))
    assert "`build` reads the ONNX with the onnx package, not installed here: pip install onnx" in line


@pytest.mark.parametrize("case", ["missing", "folder"])
def test_a_missing_model_file_or_a_folder_is_worded_one_way_by_every_command_and_api(tmp_path, monkeypatch, case):
    from detdistill.demo.app import load_detector
    from detdistill.distill.api import model_config
    from detdistill.export.evaluate import open_detector
    from detdistill.export.quantize import quantize_onnx
    from detdistill.export.tensorrt_build import build_engine
    from detdistill.models import load_detection_checkpoint
    from detdistill.runtime import Detector

    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    name = {"missing": "model.onnx", "folder": "models"}[case]
    if case == "folder":
        (tmp_path / name).mkdir()
    said = {"missing": f"{name} does not exist. ", "folder": f"{name} is a folder, not a file. "}[case]
    for args, what in ((["eval", name, "--data", "data.yaml"], "model"),
                       (["quantize", name, "--data", "images"], "model"),
                       (["build", name], "model"),
                       (["bench", name], "model"),
                       (["val", name, "--data", "data.yaml"], "model"),
                       (["demo", "--model", name, "--no-show"], "model"),
                       (["export", name], "weights"),
                       (["prune", name], "weights")):
        _assert_one_error(_invoke(*args), f"error: {what} {said}")
    for call, what in ((lambda: Detector(name, backend="onnxruntime"), "ONNX model"),
                       (lambda: open_detector(name), "model"),
                       (lambda: quantize_onnx(name, tmp_path / "images"), "ONNX model"),
                       (lambda: build_engine(name), "ONNX model"),
                       (lambda: load_detector(name, 0.25, 0.7, None), "model"),
                       (lambda: load_detection_checkpoint(name, role="student"), "student")):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert str(info.value).startswith(f"{what} {said}"), info.value
    with pytest.raises(FileNotFoundError, match=r"student checkpoint \S+missing\.pt does not exist\. Pass a trained"):
        model_config(tmp_path / "missing.pt")
