"""`detdistill run` end to end on the quickstart's tiny recipe with a pruned student: interrupted, resumed,
reported."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest
from conftest import Interrupted

from detdistill.pipeline.runner import run_pipeline
from detdistill.quickstart import quickstart_recipe

pytestmark = pytest.mark.slow



def test_pipeline_with_pruning_interrupted_then_resumed_reports_every_artifact(tmp_path):
    work = tmp_path / "run"
    recipe = quickstart_recipe(tiny=True)
    recipe["student"] = {"prune": {"target": 0.5}}
    recipe["export"]["int8"]["max_drop"] = 1.0  # the budget check runs (and is met)

    def stop_at_export(line: str) -> None:  # Ctrl-C as the first export starts
        if "export teacher to ONNX" in line:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_pipeline(recipe, work, log=stop_at_export)
    kd_best = work / "student-kd" / "weights" / "best.pt"
    stamp = kd_best.stat().st_mtime_ns

    lines: list[str] = []
    report = run_pipeline(recipe, work, log=lines.append)
    steps = [line for line in lines if line.startswith("[")]
    total = int(steps[0].split("/")[1].split("]")[0])
    assert [int(s[1:].split("/")[0]) for s in steps] == list(range(1, total + 1))  # every stage, numbered
    for stage in ("data", "teacher", "prune", "train student without KD", "distill student (default)"):
        assert any(f"] {stage}: up to date, cached" in s for s in steps), stage
    assert kd_best.stat().st_mtime_ns == stamp  # the finished training was not redone
    assert not any("holds the stages of another recipe" in line for line in lines)  # the same recipe resumed

    manifest = json.loads((work / "stages.json").read_text())
    measured = {k[len("measure "):]: v["result"] for k, v in manifest.items() if k.startswith("measure ")}
    assert list(measured) == ["teacher (FP32 ONNX)", "student, no KD (FP32 ONNX)", "student, KD (FP32 ONNX)",
                              "student, KD (INT8 ONNX, cpu)"]
    teacher = measured["teacher (FP32 ONNX)"]
    for name, r in measured.items():
        assert 0.0 <= r["map50_95"] <= r["map50"] <= 1.0 and r["latency_ms"]["inference"] > 0
        if name != "teacher (FP32 ONNX)":
            assert r["gflops"] <= 0.5 * teacher["gflops"] + 1e-6  # pruned to half the teacher's GFLOPs
            assert r["params"] < teacher["params"]

    from detdistill.export.evaluate import evaluate

    data, onnx_dir = work / "data" / "data.yaml", work / "artifacts"
    drop = manifest["quantize to INT8"]["result"]["drop"]  # measured on train images: val stays held out
    on_train = [evaluate(onnx_dir / name, data, split="train").map50_95
                for name in ("student-KD.onnx", "student-KD-int8.onnx")]
    assert drop == pytest.approx(on_train[0] - on_train[1], abs=1e-9)

    md, html = report.read_text(), (work / "report.html").read_text()
    for name, r in measured.items():
        for text in (md, html):
            assert name in text and f"{r['map50_95']:.3f}" in text and f"{r['latency_ms']['inference']:.2f}" in text
    assert html.count('<img src="data:image/png;base64,') >= 4
    assert "TensorRT is not installed" in md  # the engine stages say why they did not run
    assert "INT8: calibrated on" in md  # the INT8 stage's notes reach the report (few calibration images here)
    assert "summary: 8 frames" in md  # the demo processed every frame of the video
    assert "; mean stage ms" in md  # its summary lines stay apart in the one-line note
    assert f"on all 8 images of the val split of {data}." in md  # which images the mAP columns are from
    from detdistill.runtime.cpu import cpu_model, instruction_set

    assert f"**machine:** {cpu_model()} (" in md and f", {instruction_set()}), " in md  # the CPU the numbers are from
    cap = cv2.VideoCapture(str(work / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()

    # The work folder moved elsewhere: every stage is still up to date, and the report points into the new place.
    moved = tmp_path / "moved" / "run"
    moved.parent.mkdir()
    shutil.move(work, moved)
    lines = []
    report = run_pipeline(recipe, moved, log=lines.append)
    steps = [line for line in lines if line.startswith("[")]
    ran = [s for s in steps if not s.endswith("up to date, cached") and ": skipped (" not in s]
    assert ran == [], ran
    assert str(moved) in report.read_text() and str(work) not in report.read_text()


def test_student_at_a_smaller_input_size(tmp_path):
    """``student: {weights: teacher, imgsz: 96}``: the teacher's own weights fine-tuned with KD at a smaller
    input, exported, measured and reported at 96 (the teacher at its 128), with the GFLOPs that size costs."""
    import onnx
    import yaml

    work = tmp_path / "run"
    recipe = quickstart_recipe(tiny=True)
    recipe["student"] = {"weights": "teacher", "imgsz": 96}
    recipe["distill"]["baseline"] = False
    recipe["export"]["int8"] = None
    recipe["demo"]["frames"] = 0
    recipe["measure"] = {"corrupt": "noise:2,dark:4"}  # the report's robustness table, at each artifact's imgsz
    report = run_pipeline(recipe, work)

    manifest = json.loads((work / "stages.json").read_text())
    assert yaml.safe_load((work / "student-kd" / "args.yaml").read_text())["imgsz"] == 96
    for name in ("teacher", "student, KD"):
        robust = manifest[f"robustness {name} (FP32 ONNX)"]["result"]
        assert set(robust["per_corruption"]) == {"noise:2", "dark:4"}
        assert robust["clean"] == manifest[f"measure {name} (FP32 ONNX)"]["result"]["map50_95"]
    assert "## Robustness" in report.read_text()
    dims = onnx.load(str(work / "artifacts" / "student-KD.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][2:] == [96, 96]
    teacher, student = (manifest[f"measure {n} (FP32 ONNX)"]["result"] for n in ("teacher", "student, KD"))
    assert student["params"] == teacher["params"]
    assert student["gflops"] == pytest.approx(teacher["gflops"] * (96 / 128) ** 2, rel=0.05)
    row = next(line for line in report.read_text().splitlines() if line.startswith("| student, KD (FP32 ONNX)"))
    assert row.split(" | ")[3] == "96"


def test_pipeline_with_quantization_aware_distillation_reports_its_int8_artifact(tmp_path):
    pytest.importorskip("modelopt.torch.quantization", reason="QAD needs NVIDIA ModelOpt")
    recipe = quickstart_recipe(tiny=True)
    recipe["export"]["int8"]["qad"] = {"epochs": 1}
    recipe["export"]["engines"] = []
    lines: list[str] = []
    report = run_pipeline(recipe, tmp_path / "run", log=lines.append)
    assert any("] quantization-aware distillation (logit-box, its own FP32 weights, 1 epoch)" in line for line in lines)
    manifest = json.loads((tmp_path / "run" / "stages.json").read_text())
    measured = {k[len("measure "):]: v["result"] for k, v in manifest.items() if k.startswith("measure ")}
    qad = measured["student, QAD (INT8 Q/DQ ONNX)"]
    assert qad["evaluator"].startswith("simulated TensorRT INT8") and 0 <= qad["map50_95"] <= 1
    assert measured["student, KD (INT8 ONNX, cpu)"]["evaluator"].startswith("ONNX Runtime CPU INT8 kernels, u8s7")
    text = report.read_text()
    assert "student, QAD (INT8 Q/DQ ONNX)" in text and "simulated TensorRT INT8" in text
