"""The `detdistill` command's distillation verbs: help a newcomer can follow, clear errors."""

from __future__ import annotations

import dataclasses

import pytest
import typer
import yaml
from typer.testing import CliRunner

from detdistill.cli import app

runner = CliRunner()


def test_help_lists_verbs_and_train_options():
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for verb in ("train", "val", "recipes"):
        assert verb in out.output
    out = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert out.exit_code == 0
    for option in ("--teacher", "--student", "--data", "--recipe", "--class-map", "--resume", "key=value"):
        assert option in out.output


def test_version_from_the_command_and_from_python_m():
    """What a device has installed, in one line: `detdistill --version` and `python -m detdistill --version`."""
    import platform
    import subprocess
    import sys

    import detdistill

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.startswith(f"detdistill {detdistill.__version__} (Python ")
    done = subprocess.run([sys.executable, "-m", "detdistill", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == out.output and platform.machine() in done.stdout, done.stderr
    done = subprocess.run([sys.executable, "-m", "detdistill", "recipes"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "default" in done.stdout, done.stderr  # a verb runs the same way


def _verbs(group, prefix=()):
    """Every leaf command of the click group behind the app, as argument lists (``["data", "presets"]``)."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _verbs(command, (*prefix, name))
        else:
            yield [*prefix, name]


def test_every_verb_shows_an_example_in_its_help():
    verbs = list(_verbs(typer.main.get_command(app)))
    assert len(verbs) >= 12 and ["data", "presets"] in verbs and ["run"] in verbs
    for verb in verbs:
        out = runner.invoke(app, [*verb, "--help"], terminal_width=200)
        assert out.exit_code == 0, verb
        assert "Example" in out.output and "detdistill " + " ".join(verb) in out.output, verb


def test_recipes_lists_builtins():
    out = runner.invoke(app, ["recipes"])
    assert out.exit_code == 0
    assert "default" in out.output and "channel-wise distillation" in out.output.lower()



def test_recipes_prints_a_builtin_to_copy_and_edit(tmp_path):
    from detdistill.distill.recipe import load_recipe
    from detdistill.recipes import DEFAULT_RECIPE

    out = runner.invoke(app, ["recipes", "cwd"])
    assert out.exit_code == 0, out.output
    copy = tmp_path / "my.yaml"
    copy.write_text(out.output)
    assert dataclasses.replace(load_recipe(copy), source="") == dataclasses.replace(load_recipe("cwd"), source="")
    default = runner.invoke(app, ["recipes", "default"])
    assert default.exit_code == 0 and default.output == runner.invoke(app, ["recipes", DEFAULT_RECIPE]).output
    out = runner.invoke(app, ["recipes", "cwdd"], terminal_width=200)
    assert out.exit_code == 2 and "no built-in recipe 'cwdd': choose from" in out.output


def test_train_errors(tmp_path, coco8_yaml, teacher_pt):
    out = runner.invoke(app, ["train", "--student", "yolov8n.yaml"], terminal_width=200)
    assert out.exit_code == 2 and "missing --teacher, --data" in out.output
    out = runner.invoke(
        app, ["train", "--teacher", str(tmp_path / "t.pt"), "--student", "yolov8n.yaml", "--data", str(coco8_yaml)],
        terminal_width=200,
    )
    assert out.exit_code == 2 and "does not exist" in out.output
    out = runner.invoke(
        app,
        ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data", str(coco8_yaml), "--recipe", "nope"],
        terminal_width=200,
    )
    assert out.exit_code == 2 and "recipe 'nope' not found" in out.output
    out = runner.invoke(
        app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data", str(coco8_yaml), "epochs"],
        terminal_width=200,
    )
    assert out.exit_code == 2 and "key=value" in out.output
    out = runner.invoke(app, ["train", "--resume", str(tmp_path / "last.pt")], terminal_width=200)
    assert out.exit_code == 2 and "does not exist" in out.output
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data",
                              str(coco8_yaml), "--pseudo-conf", "0.6"], terminal_width=200)
    assert out.exit_code == 2 and "--pseudo-conf sets the teacher's confidence for --unlabeled images" in out.output
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data",
                              str(coco8_yaml), "--unlabeled", str(tmp_path), "--pseudo-conf", "1.5"], terminal_width=200)
    assert out.exit_code == 2 and "--pseudo-conf" in out.output and "less than or equal to 1" in out.output
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data",
                              str(coco8_yaml), "--unlabeled", str(tmp_path), "--pseudo-conf", "0"], terminal_width=200)
    assert out.exit_code == 2 and "--pseudo-conf 0 would label every one" in out.output  # as data.pseudo_conf: (0, 1]
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data",
                              str(coco8_yaml), "--freeze-bn"], terminal_width=200)
    assert out.exit_code == 2 and "--freeze-bn keeps a trained student's BatchNorm statistics" in out.output
    out = runner.invoke(app, ["train", "--resume", str(tmp_path)], terminal_width=200)
    assert out.exit_code == 2 and "is a folder: pass the run's checkpoint" in out.output
    out = runner.invoke(app, ["train", "--resume", str(coco8_yaml)], terminal_width=200)
    assert out.exit_code == 2 and "is not a checkpoint" in out.output
    out = runner.invoke(app, ["train", "--resume", str(teacher_pt)], terminal_width=200)
    assert out.exit_code == 2 and "not the checkpoint of an interrupted" in out.output
    # a resumed run keeps its settings: options that would be dropped are named (batch= may change)
    out = runner.invoke(app, ["train", "--resume", str(teacher_pt), "--recipe", "cwd", "epochs=25", "batch=4"],
                        terminal_width=300)
    assert out.exit_code == 2 and "--recipe, epochs= cannot change them" in out.output
    late = tmp_path / "late.yaml"  # KD off for the last 5 of 2 epochs: nothing would be distilled
    late.write_text("losses: [{type: at}]\nschedule: {stop_last: 5}\n")
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data",
                              str(coco8_yaml), "--recipe", str(late), "epochs=2", f"project={tmp_path}", "name=late"],
                        terminal_width=300)
    assert out.exit_code != 0 and "schedule.stop_last (5) turns KD off for all 2 epochs" in out.output
    assert not (tmp_path / "late").exists()


@pytest.mark.slow
def test_train_distills_with_unlabeled_images_through_the_shared_entry_point(tmp_path, coco8_yaml, teacher_pt):
    """One epoch of KD on coco8 plus its val images as unlabeled frames: the teacher labels them into
    <project>/<name>-unlabeled, the student trains on both and its checkpoint holds the student only."""
    import yaml
    from ultralytics import YOLO

    unlabeled = coco8_yaml.parent / "images" / "val"
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml",
                              "--data", str(coco8_yaml), "--unlabeled", str(unlabeled), "epochs=1", "imgsz=64",
                              "batch=4", "workers=0", "plots=False", "val=False", f"project={tmp_path}", "name=kd",
                              "lr0=1e-4"],  # a number, as ultralytics' own command line reads it
                        terminal_width=200)
    assert out.exit_code == 0, out.output
    best = tmp_path / "kd" / "weights" / "best.pt"
    assert f"student checkpoint: {best}" in " ".join(out.output.split())
    merged = tmp_path / "kd-unlabeled" / "data-with-unlabeled.yaml"
    args = yaml.safe_load((tmp_path / "kd" / "args.yaml").read_text())
    assert args["data"] == str(merged) and args["lr0"] == 1e-4  # trained on it, at that rate
    assert len(list((tmp_path / "kd-unlabeled" / "pseudo").rglob("*.jpg"))) == len(list(unlabeled.glob("*.jpg")))
    assert type(YOLO(str(best)).model).__name__ == "DetectionModel"  # the student, without the teacher


def test_int8_without_a_teacher_distills_the_student_from_its_own_weights(monkeypatch, tmp_path, coco8_yaml, teacher_pt):
    """`train --int8` with no --teacher: the .pt student is its own FP32 teacher, under the logit-box recipe unless
    --recipe names another; the job is what the CLI hands to the shared entry point."""
    pytest.importorskip("modelopt.torch.quantization", reason="--int8 needs NVIDIA ModelOpt")
    from detdistill.distill import api

    import torch

    jobs = []
    monkeypatch.setattr(api, "run_training", lambda job: jobs.append(job) or tmp_path / "best.pt")
    best = torch.load(teacher_pt, map_location="cpu", weights_only=False)  # what the run wrote: trained at 320
    best["train_args"]["imgsz"] = 320
    torch.save(best, tmp_path / "best.pt")
    for extra, recipe in (([], "logit-box"), (["--recipe", "cwd"], "cwd")):
        out = runner.invoke(app, ["train", "--int8", "--student", str(teacher_pt), "--data", str(coco8_yaml),
                                  *extra, "epochs=1"], terminal_width=200)
        assert out.exit_code == 0, out.output
        assert (str(jobs[-1].teacher), jobs[-1].recipe, jobs[-1].int8, jobs[-1].self_teacher) == \
            (str(teacher_pt), recipe, True, True)
        assert f"next: detdistill export {tmp_path / 'best.pt'} --imgsz 320 (writes its INT8 Q/DQ ONNX" in \
            " ".join(out.output.split()), out.output
    out = runner.invoke(app, ["train", "--student", str(teacher_pt), "--data", str(coco8_yaml)], terminal_width=200)
    assert out.exit_code == 2 and "missing --teacher" in out.output  # without --int8 a teacher is needed
    assert "without --teacher, `--augment PRESET`" in out.output
    out = runner.invoke(app, ["train", "--student", "yolov8n.yaml", "--data", str(coco8_yaml), "--augment", "road",
                              "epochs=1"], terminal_width=200)  # documented: road augmentation without a teacher
    assert out.exit_code == 0 and "no --teacher: the student trains on 'road' images without distillation" in out.output
    assert (jobs[-1].teacher, jobs[-1].augment, jobs[-1].recipe) == (None, "road", None)
    out = runner.invoke(app, ["train", "--student", "yolov8n.yaml", "--data", str(coco8_yaml), "--augment", "road",
                              "--recipe", "cwd"], terminal_width=200)
    assert out.exit_code == 2 and "--recipe sets how a teacher distills, and no --teacher is given" in out.output
    monkeypatch.undo()  # the real entry point: it refuses a student without trained weights before training
    out = runner.invoke(app, ["train", "--int8", "--student", "yolov8n.yaml", "--data", str(coco8_yaml)],
                        terminal_width=200)
    assert out.exit_code == 2 and "yolov8n.yaml has no trained weights" in out.output, out.output
    assert "Train it in float first, then fine-tune its best.pt" in " ".join(out.output.split())


def test_values_ultralytics_checks_late_are_refused_before_any_work(tmp_path, coco8_yaml, teacher_pt):
    """An optimizer typo, a fractional or negative imgsz, an unknown cache mode, negative workers and a dataset YAML
    given as the student: one error line each, before any training (ultralytics failed on them after loading the
    data, trained at imgsz 32 or without a cache)."""
    from detdistill.distill.trainer import TrainArgumentError, check_train_args

    base = ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data", str(coco8_yaml),
            f"project={tmp_path}", "name=run"]
    for arg, words in (("optimizer=Adamm", "optimizer=Adamm is not an ultralytics optimizer (did you mean 'Adam'"),
                       ("imgsz=1e3", "imgsz=1000.0: give the training image size as a whole number"),
                       ("imgsz=-1", "imgsz=-1: give the training image size"),
                       ("imgsz=100", "imgsz=100 is not a multiple of the models' stride 32 (ultralytics would train "
                                     "at 128): pass e.g. imgsz=128"),
                       ("cache=maybe", "cache=maybe: ultralytics caches images with cache=ram or cache=disk"),
                       ("workers=-1", "workers=-1: give the number of dataloader processes"),
                       ("batch=1.5", "batch=1.5: give the images per batch as a whole number")):
        out = runner.invoke(app, [*base, arg], terminal_width=200)
        assert out.exit_code == 2 and words in " ".join(out.output.split()), out.output
        assert "Traceback" not in out.output and not (tmp_path / "run").exists()
    check_train_args({"optimizer": "adamw", "imgsz": 640})  # ultralytics matches optimizer names ignoring case
    for ok in ({"cache": True}, {"cache": "RAM"}, {"cache": "disk"}, {"cache": False}, {"workers": 0}, {"batch": 1},
               {"batch": -1}, {"batch": 0.7}):
        check_train_args(ok)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(TrainArgumentError, match=rf"batch={bad}: give the images per batch"):
            check_train_args({"batch": bad})
    with pytest.raises(TrainArgumentError, match="imgsz=True"):
        check_train_args({"imgsz": True})
    with pytest.raises(TrainArgumentError, match=r"imgsz=\[320, 330\] is not a multiple .* train at 352"):
        check_train_args({"imgsz": [320, 330]})
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", str(coco8_yaml), "--data",
                              str(coco8_yaml)], terminal_width=200)
    assert out.exit_code == 2 and "is not a model YAML (it has no backbone: and head: sections)" in out.output


def test_val_names_a_data_yaml_ultralytics_cannot_read(tmp_path, teacher_pt):
    no_splits = tmp_path / "no-splits.yaml"
    no_splits.write_text("names: [car]\n")
    (tmp_path / "a-folder").mkdir()
    for data, words in ((no_splits, "'train:' key missing"), (tmp_path / "a-folder", "No YAML file found")):
        out = runner.invoke(app, ["val", str(teacher_pt), "--data", str(data)], terminal_width=200)
        assert out.exit_code == 2 and f"dataset '{data}' could not be read" in out.output and words in out.output
        assert "Traceback" not in out.output


def test_val_refuses_what_eval_refuses_a_split_without_labels_and_an_off_stride_size(tmp_path, teacher_pt, coco8_yaml):
    import shutil

    shutil.copytree(coco8_yaml.parent / "images", tmp_path / "images")  # the images, no labels folder
    data = tmp_path / "data.yaml"
    data.write_text(f"train: images/train\nval: images/val\nnames: {yaml.safe_load(coco8_yaml.read_text())['names']}\n")
    out = runner.invoke(app, ["val", str(teacher_pt), "--data", str(data)], terminal_width=400)
    assert out.exit_code == 2 and "no label file for any of the 4 images of split 'val'" in out.output, out.output
    out = runner.invoke(app, ["val", str(teacher_pt), "--data", str(coco8_yaml), "--imgsz", "33"], terminal_width=400)
    assert out.exit_code == 2 and "--imgsz 33 is not a multiple of the model stride 32 (ultralytics would round it " \
        "up to 64)" in out.output, out.output  # validated at 64 without a word before


def test_labels_of_classes_the_yaml_does_not_name_are_one_error_line(tmp_path, coco8_yaml, teacher_pt):
    """ultralytics drops every image whose labels hold a class id beyond names: (a warning each) and then fails with
    a traceback; `train` names the first such label file and the fix instead."""
    one_class = tmp_path / "person-only.yaml"
    one_class.write_text(yaml.safe_dump({"path": str(coco8_yaml.parent), "train": "images/train",
                                         "val": "images/val", "names": {0: "person"}}))
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data",
                              str(one_class), "epochs=1", "imgsz=64",
                              "workers=0", f"project={tmp_path}", "name=run"], terminal_width=200)
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and f"no image of {one_class} can be trained on:" in text, out.output[-3000:]
    assert "that" in text and "does not name (it names 1 classes): fix the labels or the YAML's names" in text, text
    assert "Traceback" not in out.output


def test_single_cls_is_checked_against_the_teacher_before_training(tmp_path, coco8_yaml, teacher_pt):
    """single_cls=True turns every class into ultralytics' 'item': the class map of the run is checked for that one
    class first (it failed after the data was loaded), and a map onto it is taken."""
    base = ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data", str(coco8_yaml),
            "single_cls=True", f"project={tmp_path}", "name=run"]
    out = runner.invoke(app, base, terminal_width=200)
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and "student class(es) ['item'] match no teacher class" in text, text
    assert not (tmp_path / "run").exists()
    from detdistill.distill.api import TrainJob, check_job

    job = TrainJob(student="yolov8n.yaml", data=coco8_yaml, teacher=teacher_pt, class_map="item=person,car",
                   train_args={"single_cls": True})
    assert check_job(job).losses


def test_a_relative_dataset_path_read_differently_by_the_trainer_is_refused(tmp_path, coco8_yaml, teacher_pt,
                                                                            monkeypatch):
    """ultralytics reads a relative `path:` from the current folder, detdistill's evaluation from the YAML's folder:
    where they would read different images, `train` (and `run --check`) stop before training, naming both."""
    import shutil

    from detdistill.distill.dataset_check import check_dataset

    shutil.copytree(coco8_yaml.parent, tmp_path / "cm")
    (tmp_path / "yamls").mkdir()
    data = tmp_path / "yamls" / "rel.yaml"
    data.write_text(yaml.safe_dump({"path": "cm", "train": "images/train", "val": "images/val",
                                    "names": yaml.safe_load(coco8_yaml.read_text())["names"]}))
    monkeypatch.chdir(tmp_path)  # cm/ exists here, not beside the YAML
    out = runner.invoke(app, ["train", "--teacher", str(teacher_pt), "--student", "yolov8n.yaml", "--data", str(data),
                              f"project={tmp_path}", "name=run"], terminal_width=200)
    text = " ".join(out.output.split())
    assert out.exit_code == 2 and f"is read by ultralytics' trainer as {tmp_path / 'cm'}" in text, text
    assert f"by detdistill's evaluation as {tmp_path / 'yamls' / 'cm'}" in text and "absolute" in text, text
    (tmp_path / "yamls" / "cm").symlink_to(tmp_path / "cm")
    monkeypatch.chdir(tmp_path / "yamls")  # cm/ found from here and beside the YAML: the same folder
    assert check_dataset(data)["nc"] == 80
    (tmp_path / "yamls" / "cm").unlink()
    shutil.move(tmp_path / "cm", tmp_path / "yamls" / "cm")
    monkeypatch.chdir(tmp_path)  # no cm/ here: ultralytics falls back to its datasets folder
    with pytest.raises(ValueError, match=r"not from the YAML's folder, where .*yamls/cm is: write path: as an absolute"):
        check_dataset(data)
    data.write_text(data.read_text().replace("path: cm", f"path: {tmp_path / 'yamls' / 'cm'}"))
    assert check_dataset(data)["nc"] == 80  # absolute: one folder for both
