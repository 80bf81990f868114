"""run_training, the one training entry point of `detdistill train` and `detdistill run`: which runs it reuses,
resumes or refuses before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detdistill.distill import api
from detdistill.distill.api import TrainInputError, TrainJob, run_training


def _run_dir(tmp_path: Path, last: dict | bytes | None) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "weights").mkdir(parents=True)
    if isinstance(last, bytes):
        (run_dir / "weights" / "last.pt").write_bytes(last)
    elif last is not None:
        torch.save(last, run_dir / "weights" / "last.pt")
    return run_dir


@pytest.fixture
def no_training(monkeypatch):
    """Record resume calls; fail on anything that would start a training."""
    calls: list[tuple] = []
    monkeypatch.setattr(api, "resume_config", lambda last: {"teacher": "t.pt", "recipe": "default"})
    monkeypatch.setattr(api, "resume", lambda last, cfg, **args: calls.append((Path(last), cfg, args)) or Path("b.pt"))
    monkeypatch.setattr(api, "fit", lambda *a, **k: pytest.fail("a training started"))
    monkeypatch.setattr(api, "check_inputs", lambda *a, **k: pytest.fail("inputs checked for a run to reuse"))
    return calls


def test_a_finished_run_is_reused(tmp_path, no_training):
    run_dir = _run_dir(tmp_path, {"epoch": -1, "optimizer": None})
    for teacher in (None, "t.pt"):
        assert run_training(TrainJob("s.yaml", "d.yaml", teacher, run_dir=run_dir)) == run_dir / "weights" / "best.pt"
    assert no_training == []


def test_an_interrupted_distillation_resumes_as_it_started_and_an_explicit_resume_takes_new_arguments(
        tmp_path, no_training):
    run_dir = _run_dir(tmp_path, {"epoch": 3, "optimizer": {"state": {}}})
    last = run_dir / "weights" / "last.pt"
    assert run_training(TrainJob("s.yaml", "d.yaml", "t.pt", run_dir=run_dir, train_args={"epochs": 9})) == Path("b.pt")
    run_training(TrainJob(resume=last, train_args={"batch": 4}))
    assert no_training == [(last, {"teacher": "t.pt", "recipe": "default"}, {}),
                           (last, {"teacher": "t.pt", "recipe": "default"}, {"batch": 4})]


def test_a_damaged_last_pt_is_named_with_the_fix(tmp_path, no_training):
    run_dir = _run_dir(tmp_path, b"PK\x03\x04 cut short")
    with pytest.raises(TrainInputError, match=f"delete {run_dir} and rerun"):
        run_training(TrainJob("s.yaml", "d.yaml", "t.pt", run_dir=run_dir))


def test_bad_inputs_are_refused_before_training(tmp_path, monkeypatch, teacher_pt, coco8_yaml):
    monkeypatch.setattr(api, "fit", lambda *a, **k: pytest.fail("a training started"))
    with pytest.raises(TrainInputError, match="must be a model YAML"):
        run_training(TrainJob("student.txt", coco8_yaml, teacher_pt))
    with pytest.raises(TrainInputError, match="does not exist: pass a folder of images"):
        run_training(TrainJob("yolov8n.yaml", coco8_yaml, teacher_pt, unlabeled=tmp_path / "missing"))
    with pytest.raises(TrainInputError, match="does not exist"):
        run_training(TrainJob(resume=tmp_path / "gone" / "last.pt"))
    for job in (TrainJob("s.yaml", coco8_yaml, unlabeled=tmp_path),
                TrainJob("s.yaml", coco8_yaml, augment="road", teacher_clean=True)):
        with pytest.raises(TrainInputError, match="needs a teacher"):
            run_training(job)
    with pytest.raises(TrainInputError, match=f"student checkpoint {tmp_path / 'gone.pt'} does not exist"):
        run_training(TrainJob(tmp_path / "gone.pt", coco8_yaml, int8=True))  # its own teacher: named as the student
    exported = tmp_path / "best.onnx"
    exported.write_bytes(b"onnx")
    for job in (TrainJob(exported, coco8_yaml, int8=True), TrainJob(exported, coco8_yaml, teacher_pt, int8=True)):
        with pytest.raises(TrainInputError, match=f"--int8 fine-tunes a trained ultralytics .pt student, and "
                                                  f"{exported} is not one: pass the .pt it was trained as"):
            run_training(job)
    with pytest.raises(ValueError, match="'augment' is ultralytics' test-time augmentation"):
        run_training(TrainJob("yolov8n.yaml", coco8_yaml, teacher_pt, train_args={"augment": True}))
    with pytest.raises(ValueError, match="unknown augmentation preset 'fog'"):
        run_training(TrainJob("yolov8n.yaml", coco8_yaml, teacher_pt, augment="fog"))
    from ultralytics import YOLO

    untrained = tmp_path / "yolov8n.pt"
    YOLO("yolov8n.yaml").save(untrained)  # built from its YAML, never trained: nothing to teach
    with pytest.raises(ValueError, match=f"teacher {untrained} holds untrained weights .* pass a trained checkpoint"):
        run_training(TrainJob("yolov8n.yaml", coco8_yaml, untrained))


def test_the_job_pins_its_run_folder_in_the_train_arguments(tmp_path):
    job = TrainJob("s.yaml", "d.yaml", run_dir=tmp_path / "student-kd", train_args={"epochs": 3, "name": "x"})
    assert job.args() == {"epochs": 3, "name": "student-kd", "project": str(tmp_path), "exist_ok": True}
    assert TrainJob(train_args={"epochs": 3}).args() == {"epochs": 3}


def test_an_int8_job_without_a_teacher_is_taught_by_the_student_itself():
    import dataclasses

    job = TrainJob("s.pt", "d.yaml", int8=True)
    assert (job.teacher, job.recipe, job.self_teacher) == ("s.pt", "logit-box", True)
    assert dataclasses.replace(job, data="e.yaml").self_teacher
    assert TrainJob("s.pt", "d.yaml", "s.pt", int8=True, recipe="at").recipe == "at"
    assert not TrainJob("s.pt", "d.yaml", "t.pt", int8=True).self_teacher and TrainJob("s.pt", "d.yaml").teacher is None
    assert TrainJob("s.yaml", "d.yaml", int8=True).teacher is None  # refused by check_job: no trained weights


def test_an_int8_job_fine_tunes_at_a_small_learning_rate_unless_told_otherwise(tmp_path):
    job = TrainJob("s.pt", "d.yaml", "t.pt", int8=True, train_args={"epochs": 3})
    assert job.args() == {"optimizer": "SGD", "lr0": 1e-4, "warmup_epochs": 0, "epochs": 3}
    mine = TrainJob("s.pt", "d.yaml", "t.pt", int8=True, run_dir=tmp_path / "qad",
                    train_args={"optimizer": "AdamW", "lr0": 0.002}).args()
    assert (mine["optimizer"], mine["lr0"], mine["warmup_epochs"], mine["name"]) == ("AdamW", 0.002, 0, "qad")
    assert TrainJob("s.pt", "d.yaml", "t.pt", train_args={"epochs": 3}).args() == {"epochs": 3}  # float training


def test_the_python_train_checks_its_inputs_as_the_cli_does(tmp_path, monkeypatch, teacher_pt, coco8_yaml):
    """train() goes through run_training: what `detdistill train` refuses is refused from Python too, before any
    training (model= would train another student, int8 on a YAML would fine-tune random weights)."""
    fits: list[tuple] = []
    monkeypatch.setattr(api, "fit", lambda *a, **k: fits.append((a, k)) or tmp_path / "best.pt")
    for bad, message in (({"model": "yolov8s.yaml"}, r"model='yolov8s.yaml' is set by train\(\)'s student"),
                         ({"distill_model": teacher_pt}, r"distill_model=.* is set by train\(\)'s teacher"),
                         ({"epoch": 1}, r"unknown training argument 'epoch' \(did you mean 'epochs'\?\)"),
                         ({"freezebn": True}, r"unknown training argument 'freezebn' \(did you mean 'freeze_bn'\?\)"),
                         ({"recipie": "at"}, r"unknown training argument 'recipie' \(did you mean 'recipe'\?\)")):
        with pytest.raises(ValueError, match=message):
            api.train("yolov8n.yaml", teacher_pt, coco8_yaml, **bad)
    with pytest.raises(TrainInputError, match="fine-tunes a trained student, and yolov8n.yaml has no trained weights"):
        api.train("yolov8n.yaml", teacher_pt, coco8_yaml, int8=True, epochs=1)
    with pytest.raises(TrainInputError, match="keeps a trained student's BatchNorm statistics"):
        api.train("yolov8n.yaml", teacher_pt, coco8_yaml, freeze_bn=True, epochs=1)
    stop_all = {"losses": [{"type": "at"}], "schedule": {"stop_last": 5}}
    with pytest.raises(TrainInputError, match=r"schedule.stop_last \(5\) turns KD off for all 1 epochs"):
        api.train("yolov8n.yaml", teacher_pt, coco8_yaml, recipe=stop_all, epochs=1)
    assert fits == []
    # a good call reaches fit with the checked recipe, the class map in the CLI's text form, and the INT8 defaults
    best = api.train(teacher_pt, teacher_pt, coco8_yaml, recipe="logit-box", class_map="person=person", int8=True,
                     epochs=1)
    (student, teacher, data, recipe, class_map, freeze_bn, int8, *_), args = fits[0]
    assert best == tmp_path / "best.pt" and (student, teacher, data) == (teacher_pt, teacher_pt, coco8_yaml)
    assert [s.type for s in recipe.losses] == ["logit", "box"] and class_map == "person=person" and int8
    assert args == {"optimizer": "SGD", "lr0": 1e-4, "warmup_epochs": 0, "epochs": 1}
    # int8 without a teacher: the student's own .pt teaches, under logit-box unless a recipe is named (as the CLI)
    for given, losses in ((None, ["logit", "box"]), ("at", ["at"])):
        api.train(teacher_pt, None, coco8_yaml, recipe=given, int8=True, epochs=1)
        (student, teacher, _, recipe, *_), _ = fits[-1]
        assert student == teacher == teacher_pt and [s.type for s in recipe.losses] == losses


def test_a_job_takes_its_folders_as_text_and_names_what_it_lacks(tmp_path):
    job = TrainJob("s.yaml", "d.yaml", run_dir=str(tmp_path / "run"), resume=str(tmp_path / "last.pt"))
    assert job.run_dir == tmp_path / "run" and job.resume == tmp_path / "last.pt"
    assert job.args()["project"] == str(tmp_path)
    with pytest.raises(TrainInputError, match="has no student and no data: give student"):
        run_training(TrainJob(teacher="t.pt"))
    with pytest.raises(TrainInputError, match="train_args is a mapping"):
        TrainJob("s.yaml", "d.yaml", train_args=[("epochs", 1)])
    with pytest.raises(ValueError, match="teacher is None: pass a trained .pt or a registry name"):
        api.check_inputs("yolov8n.yaml", None, "d.yaml")


def test_resuming_from_a_cut_off_checkpoint_names_the_file_and_the_fix(tmp_path, teacher_pt):
    """A truncated last.pt given to resume is named as such (it was ultralytics' TypeError with its advice to run
    an official model); a plain model .pt is named as not an interrupted distillation."""
    from detdistill.models import CheckpointError

    cut = tmp_path / "last.pt"
    cut.write_bytes(teacher_pt.read_bytes()[:4096])
    with pytest.raises(CheckpointError, match=r"could not load checkpoint .*last.pt as an ultralytics checkpoint"):
        run_training(TrainJob(resume=cut))
    with pytest.raises(TrainInputError, match=r"is not the checkpoint of an interrupted `detdistill train`"):
        run_training(TrainJob(resume=teacher_pt))
