"""Reruns and resumes: stage keys follow file contents, a damaged stages.json is rebuilt, a resumed training's
epochs count once, and a tiny pipeline interrupted in distillation resumes that training alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Interrupted

from detdistill.pipeline.report import PipelineReport, TrainingRun, read_results_csv, write_report
from detdistill.pipeline.stages import StageCache


def _touch_later(path: Path) -> None:
    """Move ``path``'s mtime 2 s ahead, as a rewrite a moment later would."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def _upper(cache: StageCache, src: Path, out: Path, calls: list) -> dict:
    def work() -> dict:
        calls.append(1)
        out.write_text(src.read_text().upper())
        return {"chars": len(src.read_text())}

    return cache.run("upper", {"src": src, "mode": "upper"}, [out], work)


# ------------------------------------------------------------------------------------------ stage keys


def test_a_rewritten_but_identical_input_keeps_the_stage_cached_changed_content_reruns_it(tmp_path):
    src, out, calls = tmp_path / "student.yaml", tmp_path / "out.txt", []
    src.write_text("width: 0.125\n")
    _upper(StageCache(tmp_path), src, out, calls)

    src.write_text("width: 0.125\n")  # written again by the next run: same bytes, new mtime
    _touch_later(src)
    cache = StageCache(tmp_path)
    assert _upper(cache, src, out, calls) == {"chars": 13} and len(calls) == 1
    assert cache.rows == [("upper", "cached", 0.0)]

    src.write_text("width: 0.250\n")  # same size, other content
    _touch_later(src)
    cache = StageCache(tmp_path)
    _upper(cache, src, out, calls)
    assert len(calls) == 2 and cache.rows[0][1] == "ran" and out.read_text() == "WIDTH: 0.250\n"


def test_a_stage_recorded_with_the_old_size_and_mtime_key_stays_cached(tmp_path):
    """Work folders from before content keys: their finished stages are not redone (nor their runs deleted)."""
    import hashlib

    src, out, run_dir = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "run"
    src.write_text("abc")
    out.write_text("ABC")
    run_dir.mkdir()
    st = src.stat()
    old = {"src": f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}", "mode": "upper"}
    key = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:20]
    (tmp_path / "stages.json").write_text(json.dumps({"upper": {"key": key, "done": True, "result": {"chars": 3}}}))

    cache, calls = StageCache(tmp_path), []
    assert cache.run("upper", {"src": src, "mode": "upper"}, [out], lambda: calls.append(1), clean=(run_dir,)) \
        == {"chars": 3}
    assert calls == [] and run_dir.is_dir()
    _touch_later(src)  # from now on the key is the content's
    assert StageCache(tmp_path).run("upper", {"src": src, "mode": "upper"}, [out], lambda: calls.append(1)) \
        == {"chars": 3} and calls == []


# ----------------------------------------------------------------------------------- damaged stages.json


def _half_written(tmp_path: Path) -> bytes:
    """A real manifest cut in the middle, as a write killed half-way leaves it."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    src = scratch / "in.txt"
    src.write_text("abc")
    _upper(StageCache(scratch), src, scratch / "out.txt", [])
    text = (scratch / "stages.json").read_bytes()
    return text[: len(text) // 2]


@pytest.mark.parametrize("damage", ["empty", "half-written", "not a manifest"])
def test_a_damaged_stages_json_is_set_aside_with_a_warning_and_the_stages_rebuilt(tmp_path, damage):
    work = tmp_path / "work"
    work.mkdir()
    content = {"empty": b"", "half-written": _half_written(tmp_path), "not a manifest": b"[1, 2]"}[damage]
    (work / "stages.json").write_bytes(content)
    run_dir = work / "student-kd"  # a training the damaged manifest knew about
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "weights" / "last.pt").write_bytes(b"epoch 3")

    lines: list[str] = []
    cache = StageCache(work, log=lines.append)
    aside = list(work.glob("stages.json.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert any(line.startswith("warning:") and "stages.json" in line and aside[0].name in line for line in lines)

    seen = cache.run("distill", {"epochs": 4}, [], lambda: sorted(p.name for p in (run_dir / "weights").iterdir()),
                     clean=(run_dir,))
    assert seen == ["last.pt"]  # the training folder was kept for the rebuilt stage to resume from
    manifest = json.loads((work / "stages.json").read_text())
    assert manifest["distill"]["done"] and manifest["distill"]["result"] == ["last.pt"]
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []  # no temporary files left behind

    assert StageCache(work).run("distill", {"epochs": 4}, [], lambda: 1 / 0) == ["last.pt"]  # cached from now on


# ----------------------------------------------------------------------------------- results.csv epochs

HEADER = ("epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
          "metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2")


def _row(epoch: int, map5095: float) -> str:
    return f"{epoch},{30.0 * epoch},1.9,3.1,1.4,0.6,0.1,{map5095 * 1.4:.4f},{map5095},1.5,2.3,1.2,0.001,0.001,0.001"


def test_a_resumed_trainings_repeated_epoch_counts_once_with_its_last_row(tmp_path):
    csv = tmp_path / "student-kd" / "results.csv"
    csv.parent.mkdir()
    # killed during epoch 3 after its row was written; resumed from epoch 2's last.pt, it redid epoch 3
    rows = [_row(1, 0.10), _row(2, 0.20), _row(3, 0.25), _row(3, 0.30), _row(4, 0.40)]
    csv.write_text("\n".join([HEADER, *rows]) + "\n")

    curves = read_results_csv("student, KD", csv)
    assert curves.epochs == [1.0, 2.0, 3.0, 4.0]
    assert curves.columns["metrics/mAP50-95(B)"] == [0.10, 0.20, 0.30, 0.40]  # the resumed run's epoch 3

    report = PipelineReport(title="t", config_text="", machine="m", imgsz=128, data="d.yaml", artifacts=[],
                            training=[TrainingRun("student, KD", csv)], stages=[], notes=[])
    md, _ = write_report(report, tmp_path / "out")
    row = next(line for line in md.read_text().splitlines() if line.startswith("| student, KD |"))
    assert row.split("|")[2].strip() == "4"


# ------------------------------------------------------------------------------- a real tiny pipeline



@pytest.mark.slow
def test_tiny_pipeline_killed_in_distillation_resumes_that_training_alone_then_reruns_nothing(tmp_path, monkeypatch):
    """The quickstart's tiny recipe (a ``width:`` student, whose YAML is rewritten on every run) with 2 epochs:
    stopped while distillation saves its 2nd epoch, rerun (only that training resumes, from its last.pt),
    then rerun again (every stage cached, nothing trained, in seconds)."""
    
    from detdistill.pipeline.runner import run_pipeline
    from detdistill.quickstart import quickstart_recipe
    from detdistill.distill.student_trainer import StudentTrainer

    work = tmp_path / "qs"
    recipe = quickstart_recipe(tiny=True)
    recipe["train"]["epochs"] = 2
    recipe["export"]["int8"]["calib_images"] = 8
    save_model = StudentTrainer.save_model

    def killed_in_epoch_2(trainer):  # epoch 2's results.csv row is written, its checkpoint is not
        if trainer.wdir.parent.name == "student-kd" and trainer.epoch == 1:
            raise Interrupted
        return save_model(trainer)

    monkeypatch.setattr(StudentTrainer, "save_model", killed_in_epoch_2)
    with pytest.raises(Interrupted):
        run_pipeline(recipe, work, log=lambda line: None)
    monkeypatch.setattr(StudentTrainer, "save_model", save_model)

    kd, no_kd, teacher = (work / d / "weights" for d in ("student-kd", "student-no-kd", "teacher"))
    assert {p.name for p in kd.iterdir()} == {"last.pt", "best.pt"}  # epoch 1's, intact
    stamps = {p: p.stat().st_mtime_ns for d in (no_kd, teacher) for p in d.iterdir()}
    stamps[kd / "best.pt"] = (kd / "best.pt").stat().st_mtime_ns

    lines: list[str] = []
    run_pipeline(recipe, work, log=lines.append)
    steps = [line for line in lines if line.startswith("[")]
    assert any(s.endswith("] distill student (default) (resuming)") for s in steps), steps
    for stage in ("data", "teacher", "train student without KD"):
        assert any(s.endswith(f"] {stage}: up to date, cached") for s in steps), stage
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.parent != kd)  # no other training ran
    assert (kd / "best.pt").stat().st_mtime_ns != stamps[kd / "best.pt"]  # the distillation finished
    assert "| student, KD | 2 |" in (work / "report.md").read_text()  # its redone epoch 2 counted once

    lines = []
    run_pipeline(recipe, work, log=lines.append)
    steps = [line for line in lines if line.startswith("[") and "engine" not in line]
    assert steps and all(s.endswith(": up to date, cached") for s in steps), steps
    stage_rows = [line for line in (work / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert not any("| ran |" in line for line in stage_rows)
    cached = [line for line in stage_rows if "| cached |" in line]
    assert cached and all(line.rstrip().endswith("| cached | - |") for line in cached)  # no time of their own
    assert f"| total of this run ({len(cached)} cached: their time was spent in earlier runs) |" in "\n".join(
        stage_rows)
