"""Stage caching: a stage reruns exactly when its inputs or outputs changed, or it never finished."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from detdistill.pipeline.stages import KEY_VERSION, StageCache


def _stage(cache: StageCache, src, out, calls: list):
    def work():
        calls.append(1)
        out.write_text(src.read_text().upper())
        return {"chars": len(src.read_text())}

    return cache.run("upper", {"src": src, "mode": "upper"}, [out], work)


def test_stage_is_skipped_while_up_to_date_and_reruns_on_change(tmp_path):
    src, out, calls = tmp_path / "in.txt", tmp_path / "out.txt", []
    src.write_text("abc")
    assert _stage(StageCache(tmp_path), src, out, calls) == {"chars": 3}
    cache = StageCache(tmp_path)  # a new process reads the manifest
    assert _stage(cache, src, out, calls) == {"chars": 3} and len(calls) == 1
    assert cache.rows[0][:2] == ("upper", "cached")

    src.write_text("abcd")  # changed input: run again, and the log says the earlier result is replaced
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 1_000_000))
    lines: list[str] = []
    assert _stage(StageCache(tmp_path, log=lines.append), src, out, calls) == {"chars": 4} and len(calls) == 2
    assert lines == ["upper (its inputs or settings changed since the last run: done again, its earlier result replaced)"]
    out.unlink()  # lost output: run again, nothing to say about inputs
    _stage(StageCache(tmp_path, log=lines.append), src, out, calls)
    assert len(calls) == 3 and out.read_text() == "ABCD" and lines[-1] == "upper"


def test_an_interrupted_stage_runs_again(tmp_path):
    cache = StageCache(tmp_path)

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("train", {"epochs": 3}, [], interrupted)
    calls = []
    StageCache(tmp_path).run("train", {"epochs": 3}, [], lambda: calls.append(1))
    assert calls == [1]


def test_a_stage_whose_inputs_changed_starts_from_a_clean_folder(tmp_path):
    run_dir = tmp_path / "run"

    def train(fail: bool):
        run_dir.mkdir(exist_ok=True)
        (run_dir / "last.pt").touch()
        if fail:
            raise KeyboardInterrupt
        return sorted(p.name for p in run_dir.iterdir())

    with pytest.raises(KeyboardInterrupt):
        StageCache(tmp_path).run("train", {"epochs": 3}, [], lambda: train(True), clean=(run_dir,))
    (run_dir / "marker").touch()
    # same inputs: the interrupted run's folder is kept for resuming
    assert StageCache(tmp_path).run("train", {"epochs": 3}, [], lambda: train(False), clean=(run_dir,)) == [
        "last.pt", "marker"]
    # new inputs: the old run is removed first
    assert StageCache(tmp_path).run("train", {"epochs": 4}, [], lambda: train(False), clean=(run_dir,)) == ["last.pt"]


def test_an_edited_kd_recipe_file_reruns_its_stage_and_a_builtin_is_keyed_by_name(tmp_path, monkeypatch):
    from detdistill.recipes import DEFAULT_RECIPE
    from detdistill.pipeline.training_stages import recipe_key

    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "my_kd.yaml"
    recipe.write_text("losses:\n  - {type: cwd, weight: 3.0}\n")
    calls: list = []

    def distill(name: str) -> None:
        StageCache(tmp_path).run("distill", {"recipe": recipe_key(name), "epochs": 3}, [], lambda: calls.append(1))

    distill(str(recipe))
    distill(str(recipe))
    assert len(calls) == 1
    recipe.write_text("losses:\n  - {type: cwd, weight: 1.0}\n")   # the same name, another loss weight
    distill(str(recipe))
    assert len(calls) == 2
    assert recipe_key("cwd") == "cwd" and recipe_key(None) is None
    assert recipe_key("default") == DEFAULT_RECIPE != "default"   # a new default retrains the distilled student


def _train_in(work, calls: list):
    """A stage that reads a file in the work folder and returns the path of the model it writes there."""
    data, best = work / "data.yaml", work / "run" / "best.pt"

    def train():
        calls.append(1)
        best.parent.mkdir(exist_ok=True)
        best.write_text(data.read_text())
        return {"best": str(best), "epochs": 3}

    args = {"project": str(work), "name": "run"}  # path strings in the key, as ultralytics' arguments are
    return StageCache(work).run("train", {"data": data, "args": args}, [best], train, clean=(best.parent,))


def test_a_moved_work_folder_keeps_its_finished_stages(tmp_path):
    first, calls = tmp_path / "a" / "work", []
    first.mkdir(parents=True)
    (first / "data.yaml").write_text("names: [car]\n")
    assert _train_in(first, calls)["best"] == str(first / "run" / "best.pt")

    moved = tmp_path / "b" / "elsewhere"
    moved.parent.mkdir()
    shutil.move(first, moved)
    result = _train_in(moved, calls)
    assert len(calls) == 1  # nothing retrained
    assert result == {"best": str(moved / "run" / "best.pt"), "epochs": 3}  # the result points into the new place
    shutil.copytree(moved, tmp_path / "copy")  # a copy keeps them too, and the original is untouched
    assert _train_in(tmp_path / "copy", calls)["best"] == str(tmp_path / "copy" / "run" / "best.pt")
    assert _train_in(moved, calls)["best"] == str(moved / "run" / "best.pt") and len(calls) == 1

    (moved / "data.yaml").write_text("names: [bus]\n")  # a changed input still retrains
    _train_in(moved, calls)
    assert len(calls) == 2


def test_a_training_interrupted_before_the_move_starts_again(tmp_path):
    first, moved = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    (first / "data.yaml").write_text("names: [car]\n")

    def interrupted():
        (first / "run").mkdir()
        (first / "run" / "last.pt").write_text("epoch 1 of a run in a")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StageCache(first).run("train", {"data": first / "data.yaml"}, [], interrupted, clean=(first / "run",))
    shutil.move(first, moved)
    seen = []
    StageCache(moved).run("train", {"data": moved / "data.yaml"}, [],
                          lambda: seen.append(sorted(p.name for p in (moved / "run").glob("*"))),
                          clean=(moved / "run",))
    assert seen == [[]]  # its checkpoint (which names the old folder) was removed, not resumed


def test_a_work_folder_recorded_with_absolute_keys_is_still_up_to_date(tmp_path):
    """Manifests written before keys were relative to the work folder keep their stages where they are."""
    src, out, calls = tmp_path / "in.txt", tmp_path / "out.txt", []
    src.write_text("abc")
    _stage(StageCache(tmp_path), src, out, calls)
    manifest = json.loads((tmp_path / "stages.json").read_text())
    cache = StageCache(tmp_path)
    manifest["upper"] = {**manifest["upper"], "key": cache._key({"src": src, "mode": "upper"}, version=2), "v": 2,
                         "result": {"chars": 3}}
    del manifest["upper"]["work"]
    (tmp_path / "stages.json").write_text(json.dumps(manifest))
    assert _stage(StageCache(tmp_path), src, out, calls) == {"chars": 3} and len(calls) == 1
    assert json.loads((tmp_path / "stages.json").read_text())["upper"]["v"] == KEY_VERSION  # upgraded in place


def test_a_work_folder_of_another_recipe_is_named_before_any_stage_runs(tmp_path):
    """The recipe is kept in the work folder; a run of another recipe over finished stages warns up front, the same
    recipe (or a folder with nothing finished yet) does not."""
    from detdistill.pipeline.runner import RECIPE_COPY, claim_workdir, note_recipe

    src, out, calls, lines = tmp_path / "in.txt", tmp_path / "out.txt", [], []
    src.write_text("abc")
    work = claim_workdir(tmp_path / "run")
    first, second = "name: a\nepochs: 3\n", "name: a\nepochs: 4\n"
    note_recipe(work, first, StageCache(work), lines.append)
    assert lines == [] and (work / RECIPE_COPY).read_text() == first
    note_recipe(work, second, StageCache(work), lines.append)  # nothing finished there yet: nothing to replace
    assert lines == []
    cache = StageCache(work)
    cache.run("upper", {"src": src}, [out], lambda: calls.append(1))
    note_recipe(work, second, StageCache(work), lines.append)
    assert lines == []
    note_recipe(work, first, StageCache(work), lines.append)
    assert len(lines) == 1 and lines[0].startswith(f"warning: the work folder {work} holds the stages of another "
                                                   "recipe") and "--workdir NEW_FOLDER" in lines[0]
    assert (work / RECIPE_COPY).read_text() == first
    assert claim_workdir(work) == work  # the kept recipe does not make the folder look like someone else's


def test_after_a_damaged_manifest_a_training_stage_keeps_its_folder_and_says_it_may_be_reused(tmp_path):
    run_dir = tmp_path / "student"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "weights" / "last.pt").write_bytes(b"epoch 3")
    (tmp_path / "stages.json").write_text('{"train": {"key": "3f')  # cut off mid-write
    lines: list[str] = []
    cache = StageCache(tmp_path, log=lines.append)
    seen = cache.run("train", {"epochs": 5}, [run_dir / "weights" / "best.pt"],
                     lambda: (run_dir / "weights" / "last.pt").read_text(), clean=(run_dir,))
    assert seen == "epoch 3"  # the folder was kept for the training to resume or reuse
    assert lines[-1] == "train (from what its folder holds: resumed, or reused if finished)", lines


def test_a_comment_or_layout_edit_of_the_recipe_is_no_other_recipe(tmp_path):
    """The warning compares what the recipes ask for: comments, layout and defaults spelled out do not count."""
    from detdistill.pipeline.runner import claim_workdir, note_recipe

    src, out, lines = tmp_path / "in.txt", tmp_path / "out.txt", []
    src.write_text("abc")
    work = claim_workdir(tmp_path / "run")
    recipe = "name: road\ndata: {shapes: {}}\nteacher: {weights: yolov8n}\nstudent: {width: 0.125}\n"
    note_recipe(work, recipe, StageCache(work), lines.append)
    StageCache(work).run("upper", {"src": src}, [out], lambda: out.write_text("ABC"))
    edited = ("# my road recipe\nname: road   # the work folder\nimgsz: 640\ndata:\n  shapes: {}\n"
              "student: {width: 0.125}\nteacher: {weights: yolov8n}\n")
    note_recipe(work, edited, StageCache(work), lines.append)
    assert lines == []
    note_recipe(work, edited.replace("0.125", "0.25"), StageCache(work), lines.append)
    assert len(lines) == 1 and "holds the stages of another recipe" in lines[0]


def test_the_qad_stage_counts_its_epochs_in_words():
    from detdistill.pipeline.training_stages import qad_stage_name

    assert qad_stage_name("logit-box", True, 1) == ("quantization-aware distillation (logit-box, its own FP32 "
                                                    "weights, 1 epoch)")
    assert qad_stage_name("at", False, 3) == "quantization-aware distillation (at, the teacher, 3 epochs)"
