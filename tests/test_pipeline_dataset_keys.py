"""Stage keys track a dataset's files: an edited, added or removed image or label file re-runs the stages that read
the dataset; files ultralytics writes beside it do not; every stage that reads the dataset declares it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from detdistill.pipeline.artifacts import Artifact
from detdistill.pipeline.config import validate
from detdistill.pipeline.context import StageContext
from detdistill.pipeline.dataset_files import DataInput, dataset_paths, folder_listing
from detdistill.pipeline.stages import KEY_VERSION, StageCache


@pytest.fixture
def coco8(tmp_path: Path, coco8_yaml: Path) -> Path:
    """A copy of the real coco8 dataset (4 train, 4 val images) that a test may edit; its data YAML."""
    root = tmp_path / "coco8"
    shutil.copytree(coco8_yaml.parent, root, ignore=shutil.ignore_patterns("*.cache"))
    return root / coco8_yaml.name


def _measure(cache: StageCache, data: Path, calls: list) -> None:
    """A stage that reads ``data`` (counted in ``calls`` each time it runs)."""
    out = cache.workdir / "scored.txt"

    def score() -> None:
        calls.append(1)
        out.write_text("ok")

    cache.run("measure", {"data": DataInput(data)}, [out], score)


def _touch_later(path: Path) -> None:
    """Move ``path``'s modification time on by a second (an edit within the clock's resolution still counts)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_an_edited_added_or_removed_label_or_image_file_reruns_the_stage(tmp_path, coco8):
    work, calls = tmp_path / "work", []
    work.mkdir()
    _measure(StageCache(work), coco8, calls)
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 1  # nothing changed: cached

    label = coco8.parent / "labels" / "val" / "000000000036.txt"
    label.write_text(label.read_text().replace("0.", "0.0", 1))  # a box edited
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 2

    _touch_later(label)  # rewritten with the same size: its modification time tells
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 3

    image = next((coco8.parent / "images" / "train").glob("*.jpg"))
    shutil.copy(image, image.with_name("added.jpg"))  # an image added
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 4

    image.unlink()  # an image removed
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 5
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 5


def test_files_that_training_writes_beside_a_dataset_leave_its_stages_cached(tmp_path, coco8):
    work, calls = tmp_path / "work", []
    work.mkdir()
    _measure(StageCache(work), coco8, calls)
    labels, images = coco8.parent / "labels", coco8.parent / "images"
    (labels / "train.cache").write_bytes(b"ultralytics label cache")  # beside labels/train
    (images / "train" / "000000000009.npy").write_bytes(b"cache=disk image")  # beside the image
    (images / "val" / ".000000000036.jpg.1234-abcd.tmp").write_bytes(b"a hidden temporary file")
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 1


def test_a_dataset_is_its_splits_image_and_label_folders(tmp_path, coco8):
    root = coco8.parent
    assert dataset_paths(coco8) == [root / "images" / "train", root / "labels" / "train",
                                    root / "images" / "val", root / "labels" / "val"]
    # a split given as an image list: the list itself, and the folders of its images with their labels
    listed = tmp_path / "val.txt"
    listed.write_text("".join(f"{p}\n" for p in sorted((root / "images" / "val").glob("*.jpg"))[:2]))
    yaml_file = tmp_path / "listed.yaml"
    yaml_file.write_text(f"train: {root / 'images' / 'train'}\nval: {listed}\nnames: {{0: person}}\n")
    assert dataset_paths(yaml_file)[2:] == [listed, root / "images" / "val", root / "labels" / "val"]


def test_a_folder_input_is_keyed_by_its_files(tmp_path, coco8):
    """``data.unlabeled`` is a folder: adding an image to it re-runs the labelling stage."""
    frames = tmp_path / "frames"
    shutil.copytree(coco8.parent / "images" / "val", frames)
    before = folder_listing(frames)
    assert before.startswith("files:4:")
    shutil.copy(next(frames.glob("*.jpg")), frames / "sub.jpg")
    assert folder_listing(frames).startswith("files:5:") and folder_listing(frames) != before


def test_a_work_folder_keyed_before_folder_listings_keeps_its_stages(tmp_path, coco8):
    """A manifest of key version 3 (a dataset keyed by its YAML alone) stays up to date, and is upgraded in place."""
    work, calls = tmp_path / "work", []
    work.mkdir()
    _measure(StageCache(work), coco8, calls)
    manifest = json.loads((work / "stages.json").read_text())
    manifest["measure"] = {**manifest["measure"], "v": 3,
                           "key": StageCache(work)._key({"data": DataInput(coco8)}, version=3)}
    (work / "stages.json").write_text(json.dumps(manifest))
    _measure(StageCache(work), coco8, calls)
    assert len(calls) == 1 and json.loads((work / "stages.json").read_text())["measure"]["v"] == KEY_VERSION


class _Recorded(Exception):
    """Raised by :class:`_Recorder` in place of running a stage."""


class _Recorder(StageCache):
    """A stage cache that records each stage's inputs instead of running it."""

    def run(self, name, inputs, outputs, fn, clean=()):
        self.keys = {**getattr(self, "keys", {}), name: inputs}
        raise _Recorded(name)


def _keys_of(tmp_path: Path, recipe: dict, *calls) -> dict:
    """The inputs each stage runner in ``calls`` (functions of a context) declares under ``recipe``."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    ctx = StageContext(validate(recipe), work, _Recorder(work), log=lambda line: None)
    for call in calls:
        with pytest.raises(_Recorded):
            call(ctx)
    return ctx.stages.keys


def test_every_stage_that_reads_the_dataset_is_keyed_by_its_files(tmp_path, coco8, teacher_pt):
    from detdistill.pipeline import deploy_stages, input_stages, measure_stages, training_stages

    base = {"data": {"yaml": str(coco8)}, "teacher": {"weights": str(teacher_pt)}, "student": {"prune": {}},
            "demo": {"frames": 4}, "measure": {"corrupt": "fog:1"}}
    onnx = Artifact("student_kd", "onnx", tmp_path / "s.onnx", teacher_pt, 320)
    keys = _keys_of(tmp_path, {**base, "distill": {"recipe": None}},
                    lambda c: input_stages.pruned_teacher(c, teacher_pt, coco8),
                    lambda c: training_stages.students(c, str(teacher_pt), coco8, coco8, teacher_pt),
                    lambda c: deploy_stages.quantize(c, onnx, coco8, c.cfg.export.int8),
                    lambda c: measure_stages.measure(c, onnx, coco8),
                    lambda c: measure_stages.robustness(c, onnx, coco8, 0.5),
                    lambda c: measure_stages.demo(c, onnx, coco8))
    keys |= _keys_of(tmp_path, {**base, "distill": {"baseline": False}, "export": {"int8": {"qad": {"epochs": 1}}}},
                     lambda c: training_stages.students(c, str(teacher_pt), coco8, coco8, teacher_pt),
                     lambda c: training_stages.qad(c, Artifact("student_kd", "pt", teacher_pt, teacher_pt, 320),
                                                   coco8, teacher_pt))
    keys |= _keys_of(tmp_path, {**base, "teacher": {"train": {"model": "yolov8n.yaml"}}},
                     lambda c: input_stages.teacher(c, coco8))
    assert len(keys) == 9, sorted(keys)
    before = {name: StageCache(tmp_path / "work")._key(inputs) for name, inputs in keys.items()}
    label = coco8.parent / "labels" / "train" / "000000000009.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")  # a box added to a training label
    cache = StageCache(tmp_path / "work")  # the next run
    changed = {name for name, inputs in keys.items() if cache._key(inputs) != before[name]}
    assert changed == set(keys)


def test_the_labelling_stage_is_keyed_by_everything_its_labels_depend_on(tmp_path, coco8, teacher_pt):
    """The teacher's labels of ``data.unlabeled`` images change with the class map and the image size: editing
    either labels them again (the stage was cached, and the student trained on labels of the old settings)."""
    from detdistill.pipeline import input_stages

    frames = tmp_path / "frames"
    shutil.copytree(coco8.parent / "images" / "val", frames)
    base = {"data": {"yaml": str(coco8), "unlabeled": str(frames)}, "teacher": {"weights": str(teacher_pt)},
            "student": {"prune": {}}}

    def key(**settings) -> str:
        keys = _keys_of(tmp_path, {**base, **settings}, lambda c: input_stages.with_unlabeled(c, coco8, teacher_pt))
        (inputs,) = keys.values()
        return StageCache(tmp_path / "work")._key(inputs)

    plain = key()
    assert key() == plain
    assert key(distill={"class_map": {"person": "person"}}) != plain
    assert key(imgsz=320) != plain


class _Finished(StageCache):
    """A stage cache whose trainings are all finished: each stage returns its output without running."""

    def run(self, name, inputs, outputs, fn, clean=()):
        return str(outputs[0])


@pytest.mark.parametrize(("distill", "note"), [
    ({"augment": "road", "teacher_clean": True}, "Augmentation: the student without KD and the distilled student (its "
                                                  "teacher read the clean images) trained under the 'road' preset."),
    ({"augment": "road-light", "recipe": None}, "Augmentation: the student without KD trained under the 'road-light' "
                                                "preset."),
    ({}, None)])
def test_the_report_says_which_students_trained_under_a_preset(tmp_path, coco8, teacher_pt, distill, note):
    from detdistill.pipeline import training_stages

    recipe = {"data": {"yaml": str(coco8)}, "teacher": {"weights": str(teacher_pt)}, "student": {"prune": {}},
              "distill": distill}
    work = tmp_path / "work"
    work.mkdir()
    ctx = StageContext(validate(recipe), work, _Finished(work), log=lambda line: None)
    training_stages.students(ctx, str(teacher_pt), coco8, coco8, teacher_pt)
    assert [n for n in ctx.notes if n.startswith("Augmentation")] == ([note] if note else [])


def test_distill_average_trains_the_student_again_on_clean_images_and_ships_the_average(tmp_path, coco8, teacher_pt,
                                                                                       monkeypatch):
    """The stages run through the real stage cache; the trainings are recorded instead of run (each "trains" to a
    made best.pt: the teacher, and a moved copy for the clean one); the average is computed for real."""
    import torch

    from detdistill.distill import api
    from detdistill.pipeline import training_stages

    jobs = []

    def trained(job):
        jobs.append(job)
        ckpt = torch.load(teacher_pt, map_location="cpu", weights_only=False)
        model = ckpt["model"].float()
        moved = job.augment is None  # the clean one differs from the augmented one
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * p.std() * 0.02 * moved if p.ndim > 1 else 0.0)
        ckpt["model"] = model.half()
        (job.run_dir / "weights").mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, job.run_dir / "weights" / "best.pt")
        return job.run_dir / "weights" / "best.pt"

    monkeypatch.setattr(api, "run_training", trained)
    recipe = {"data": {"yaml": str(coco8)}, "teacher": {"weights": str(teacher_pt)}, "student": {"prune": {}},
              "distill": {"augment": "road", "teacher_clean": True, "average": 0.5, "baseline": False}}
    work = tmp_path / "work"
    work.mkdir()
    lines = []
    ctx = StageContext(validate(recipe), work, StageCache(work, log=lines.append), log=lines.append)
    kd = training_stages.students(ctx, str(teacher_pt), coco8, coco8, teacher_pt)[-1]
    road, clean = jobs
    assert (road.augment, road.teacher_clean, road.run_dir.name) == ("road", True, "student-kd")
    assert (clean.augment, clean.teacher_clean, clean.run_dir.name) == (None, False, "student-kd-clean")
    assert (clean.recipe, clean.teacher, clean.freeze_bn) == (road.recipe, road.teacher, road.freeze_bn)
    assert (kd.role, kd.path) == ("student_kd", work / "student-kd-average.pt")
    record = torch.load(kd.path, map_location="cpu", weights_only=False)["detdistill_average"]
    assert (record["first"], record["second"], record["weight"]) == \
        (str(work / "student-kd-clean" / "weights" / "best.pt"), str(work / "student-kd" / "weights" / "best.pt"), 0.5)
    assert any(n.startswith("The distilled student is the weight average of two distillations") for n in ctx.notes)
    # another weight averages again: the stage keeps one name and one file, and its key holds the weight
    recipe["distill"]["average"] = 0.25
    ctx = StageContext(validate(recipe), work, StageCache(work, log=lines.append), log=lines.append)
    kd = training_stages.students(ctx, str(teacher_pt), coco8, coco8, teacher_pt)[-1]
    assert len(jobs) == 2 and torch.load(kd.path, map_location="cpu", weights_only=False)["detdistill_average"][
        "weight"] == 0.25
