"""Stage caching: a stage reruns exactly when its inputs or outputs changed, or it never finished."""

from __future__ import annotations

import os

import pytest

from detdistill.pipeline.stages import StageCache


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

    src.write_text("abcd")  # changed input
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 1_000_000))
    assert _stage(StageCache(tmp_path), src, out, calls) == {"chars": 4} and len(calls) == 2
    out.unlink()  # lost output
    _stage(StageCache(tmp_path), src, out, calls)
    assert len(calls) == 3 and out.read_text() == "ABCD"


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
    from detdistill.distill.recipe import DEFAULT_RECIPE
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
