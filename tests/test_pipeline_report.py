"""The pipeline report: numbers in both files, relative columns, inline plots, escaping, bad csv."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import pytest

from detdistill.pipeline.artifacts import Artifact
from detdistill.pipeline.report import ArtifactResult, PipelineReport, TrainingRun, write_report
from detdistill.pipeline.report.records import QAD_ONNX_NOTE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_PREFIX = '<img src="data:image/png;base64,'
ODD_NAME = "student <KD> & co"
MD_ODD = r"student \<KD\> & co"  # Markdown escapes angle brackets so renderers keep them
ODD_NOTE = "not evaluated (<no GPU> & no TensorRT)"
TEACHER, NO_KD, KD = "teacher (FP32 PyTorch)", "student, no KD (FP32 PyTorch)", "student, KD (FP32 PyTorch)"
INT8, ENGINE = "student, KD (INT8 ONNX, cpu)", "student, KD (FP16 TensorRT)"

HEADER = [
    "epoch", "time", "train/box_loss", "train/cls_loss", "train/dfl_loss", "train/kd_logit",
    "train/kd_box", "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)",
    "metrics/mAP50-95(B)", "val/box_loss", "val/cls_loss", "val/dfl_loss", "val/kd_logit",
    "val/kd_box", "lr/pg0", "lr/pg1", "lr/pg2",
]


def _csv(path: Path, rows: list[list[float]], pad: bool) -> Path:
    """Write a results.csv; ``pad`` right-aligns like ultralytics < 8.1 (leading spaces)."""
    cells = [HEADER] + [[f"{v:g}" for v in row] for row in rows]
    width = max(len(c) for line in cells for c in line) + 2 if pad else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(",".join(c.rjust(width) for c in line) for line in cells) + "\n")
    return path


def _row(epoch: int, map5095: float, kd_logit: float) -> list[float]:
    return [
        epoch, 50.0 * epoch, 1.5 / epoch, 2.0 / epoch, 1.1 / epoch, kd_logit, 0.4 / epoch,
        0.5, 0.4, map5095 * 1.4, map5095, 1.4, 1.9, 1.2, 0.0, 0.0, 1e-3, 1e-3, 1e-3,
    ]


def _artifacts(tmp: Path) -> list[ArtifactResult]:
    lat = {"preprocess": 1.23, "inference": 12.34, "postprocess": 0.56}
    teacher, no_kd, kd = (Artifact(role, "pt", tmp / f, tmp / f, size) for role, f, size in
                          (("teacher", "t.pt", 320), ("student", "s.pt", 224), ("student_kd", "kd.pt", 224)))
    return [
        ArtifactResult(teacher, 6.25, 3_157_200, 8.7, 0.373, 0.528, {}, "pytorch"),
        ArtifactResult(no_kd, 2.61, 1_234_567, 3.1, 0.241, 0.377, dict(lat), "pytorch"),
        ArtifactResult(kd, 2.63, 1_234_567, 3.1, 0.287, 0.431,
                       {"preprocess": 1.11, "inference": 10.87, "postprocess": 0.49}, "pytorch"),
        ArtifactResult(kd.exported(tmp / "kd.onnx", precision="int8", method="ptq", target="cpu"), 1.42, None, None,
                       0.279, None, {"preprocess": 1.05, "inference": 6.66, "postprocess": 0.47}, "onnxruntime CPU"),
        ArtifactResult(kd.exported(tmp / "kd.engine", precision="fp16", target="tensorrt"), 3.31, None, None, None,
                       None, {"preprocess": 0.91, "inference": 2.22, "postprocess": 0.33, "total": 3.75},
                       "tensorrt", ODD_NOTE),
    ]


def _report(tmp: Path, training: list[TrainingRun]) -> PipelineReport:
    return PipelineReport(
        title="Shrink <yolov8n> & friends",
        config_text="teacher: yolov8n.pt\nstudent: {prune: 0.5}\nname: a<b&c\n",
        machine="x86_64, 2 CPU cores, no GPU; onnxruntime 1.32",
        imgsz=320,
        data="datasets/coco8.yaml",
        artifacts=_artifacts(tmp),
        training=training,
        stages=[("data", "cached", 0.04), ("distill", "ran", 412.5), ("build", "skipped: no TensorRT", 0.0)],
        notes=["TensorRT not present: engine stages skipped"],
    )


def _two_runs(tmp: Path) -> list[TrainingRun]:
    no_kd = _csv(tmp / "a" / "results.csv", [_row(e, 0.05 * e, 0.0) for e in (1, 2, 3)], pad=False)
    kd = _csv(tmp / "b" / "results.csv", [_row(e, 0.06 * e, 9.0 - e) for e in (1, 2, 3, 4)], pad=True)
    return [TrainingRun("student, no KD", no_kd), TrainingRun(ODD_NAME, kd)]


def _written(tmp: Path, training: list[TrainingRun] | None = None) -> tuple[str, str]:
    md, page = write_report(_report(tmp, _two_runs(tmp) if training is None else training), tmp / "out")
    assert (md.name, page.name) == ("report.md", "report.html")
    return md.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")


def _md_row(md: str, name: str, section: str = "") -> list[str]:
    """Cells of the first Markdown table row named ``name`` (after heading ``section``), unescaped."""
    text = md.split(f"## {section}\n", 1)[1] if section else md
    escaped = name.replace("<", "\\<").replace(">", "\\>")
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {escaped} |"))
    cells = line.strip()[2:-2].split(" | ")
    return [c.strip().replace("\\<", "<").replace("\\>", ">") for c in cells]


def _html_rows(page: str) -> dict[str, list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", page, flags=re.DOTALL)
    cells = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.DOTALL)] for r in rows]
    return {c[0]: c for c in cells if c}


def _expected(a: ArtifactResult, teacher: ArtifactResult) -> list[str]:
    def f(v, d):
        return "—" if v is None else f"{v:.{d}f}"

    lat = a.latency_ms
    total = lat.get("total", sum(lat.values())) if lat else None
    kept = f(None if a.map50_95 is None else 100 * a.map50_95 / teacher.map50_95, 1)
    flops = f(None if a.gflops is None else 100 * a.gflops / teacher.gflops, 1)
    return [
        a.name, a.kind, a.backend, str(a.imgsz or "—"), "—" if a.params is None else f"{a.params / 1e6:.2f}", f(a.gflops, 2),
        f(a.size_mb, 2), f(a.map50_95, 3), f(a.map50, 3), f(lat.get("preprocess"), 2),
        f(lat.get("inference"), 2), f(lat.get("postprocess"), 2), f(total, 2), kept, flops, a.note,
    ]


def test_every_number_in_both_files_with_relative_columns(tmp_path: Path) -> None:
    md, page = _written(tmp_path)
    arts = _artifacts(tmp_path)
    rows = _html_rows(page.split("<h2>Artifacts</h2>")[1].split("<h2>")[0])
    for a in arts:
        want = _expected(a, arts[0])
        assert _md_row(md, a.name) == want
        assert rows[a.name] == want
    kd = _md_row(md, KD)
    assert kd[-3] == f"{100 * 0.287 / 0.373:.1f}" == "76.9"  # mAP kept %
    assert kd[-2] == f"{100 * 3.1 / 8.7:.1f}" == "35.6"  # GFLOPs %
    assert _md_row(md, TEACHER)[-3:-1] == ["100.0", "100.0"]
    assert _md_row(md, ENGINE)[-1] == ODD_NOTE and _md_row(md, ENGINE)[1] == "engine"
    assert _md_row(md, KD)[3] == "224" and _md_row(md, TEACHER)[3] == "320"  # each at its own input size
    assert _md_row(md, TEACHER)[9:13] == ["—"] * 4  # no latency measured for the .pt
    assert _md_row(md, ENGINE)[12] == "3.75"  # the measured total wins


def test_the_teacher_is_found_by_its_role_wherever_it_is_listed(tmp_path: Path) -> None:
    report = _report(tmp_path, [])
    report.artifacts = report.artifacts[1:] + report.artifacts[:1]  # a student first, the teacher last
    md, _ = write_report(report, tmp_path / "out")
    text = md.read_text(encoding="utf-8")
    assert _md_row(text, KD)[-3:-1] == ["76.9", "35.6"] and _md_row(text, NO_KD)[-3] == f"{100 * 0.241 / 0.373:.1f}"
    assert f'relative to "{TEACHER}"' in text


def test_header_stages_notes_training_and_recipe(tmp_path: Path) -> None:
    md, page = _written(tmp_path)
    for text in ("x86_64, 2 CPU cores, no GPU", "datasets/coco8.yaml", "320",
                 "TensorRT not present: engine stages skipped", "skipped: no TensorRT"):
        assert text in md and html.escape(text) in page
    assert _md_row(md, "distill") == ["distill", "ran", "412.5"]
    assert _md_row(md, "data") == ["data", "cached", "-"]  # no time of its own in this run
    assert "total of this run (1 cached: their time was spent in earlier runs)" in md
    assert "```yaml\nteacher: yolov8n.pt\n" in md
    # training summary: final mAP of each run, KD columns found (padded header names stripped)
    no_kd = _md_row(md, "student, no KD", "Training")
    assert no_kd == ["student, no KD", "3", "0.150", "0.210", "0.150 (epoch 3)",
                     "train/kd_logit 0.0000, train/kd_box 0.1333"]
    kd = _md_row(md, ODD_NAME, "Training")
    assert kd == [ODD_NAME, "4", "0.240", "0.336", "0.240 (epoch 4)", "train/kd_logit 5.0000, train/kd_box 0.1000"]
    assert _html_rows(page.split("<h2>Training</h2>")[1])[ODD_NAME] == kd


def test_html_plots_are_inline_pngs_that_decode(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    _, page = _written(tmp_path)
    blobs = re.findall(re.escape(IMG_PREFIX) + r'([A-Za-z0-9+/=]+)"', page)
    # latency scatter, GFLOPs scatter, size bars, one training figure per run
    assert len(blobs) == page.count(IMG_PREFIX) == 5
    for blob in blobs:
        png = base64.b64decode(blob, validate=True)
        assert png.startswith(PNG_SIGNATURE)
        pixels = image.imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    md, page = _written(tmp_path)
    lowered = page.lower()
    for bad in ('src="http', "href=\"http", "src='http", "<script", "<link", "@import", "url("):
        assert bad not in lowered
    assert "<style>" in page
    assert "student &lt;KD&gt; &amp; co" in page and "<KD>" not in page
    assert "Shrink &lt;yolov8n&gt; &amp; friends" in page
    assert "name: a&lt;b&amp;c" in page
    assert f"| {MD_ODD} |" in md and "<KD>" not in md
    assert "(&lt;no GPU&gt; &amp; no TensorRT)" in page and r"(\<no GPU\> & no TensorRT)" in md  # an artifact's note
    assert r"# Shrink \<yolov8n\> & friends" in md


def test_missing_or_empty_csv_gives_a_note_not_a_crash(tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "results.csv"
    empty.parent.mkdir()
    empty.write_text("")
    cut = _csv(tmp_path / "cut" / "results.csv", [_row(e, 0.1 * e, 1.0) for e in (1, 2)], pad=True)
    cut.write_text(cut.read_text() + "3,150,0.5\n")  # training killed while writing epoch 3
    runs = [TrainingRun("gone", tmp_path / "nope" / "results.csv"), TrainingRun("empty", empty),
            TrainingRun("cut", cut)]
    md, page = _written(tmp_path, runs)
    for name in ("gone", "empty"):
        assert f"no training curves for {name}" in md and f"no training curves for {name}" in page
    assert _md_row(md, "gone", "Training")[1:5] == ["—"] * 4
    assert _md_row(md, "cut", "Training")[1:5] == ["3", "0.200", "0.280", "0.200 (epoch 2)"]
    assert page.count(IMG_PREFIX) == 4  # artifact plots and the cut run's curves


def test_no_artifacts_no_teacher_no_training(tmp_path: Path) -> None:
    report = _report(tmp_path, [])
    report.artifacts = [a for a in report.artifacts if not a.artifact.is_teacher]
    md, page = write_report(report, tmp_path / "deep" / "out")
    text = md.read_text(encoding="utf-8")
    assert "No teacher artifact: relative columns are empty." in text
    assert _md_row(text, KD)[-3:-1] == ["—", "—"]
    report.artifacts, report.stages, report.notes = [], [], []
    md, page = write_report(report, tmp_path / "bare")
    assert "_none_" in md.read_text(encoding="utf-8") and IMG_PREFIX not in page.read_text(encoding="utf-8")


def test_a_failing_plot_becomes_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import detdistill.pipeline.report.plots as report_module

    def broken(_artifacts: object) -> bytes:
        raise ValueError("bad axis")

    monkeypatch.setattr(report_module, "plot_sizes", broken)
    _, page = _written(tmp_path, [])
    assert "no plot: file size (plotting failed: ValueError: bad axis)" in page
    assert page.count(IMG_PREFIX) == 2


def test_robustness_table_and_plot_when_artifacts_were_scored_under_corruption(tmp_path: Path) -> None:
    from detdistill.export.robustness import Robustness

    report = _report(tmp_path, [])
    md, page = write_report(report, tmp_path / "clean")
    assert "Robustness" not in md.read_text(encoding="utf-8") and "Robustness" not in page.read_text(encoding="utf-8")
    teacher, _, kd = report.artifacts[:3]
    teacher.robustness = Robustness(0.373, {"fog": 0.30, "noise:3": 0.20}, {"fog": [0.34, 0.32, 0.30, 0.28, 0.26],
                                                                            "noise:3": [0.20]})
    kd.robustness = Robustness(0.287, {"fog": 0.25, "noise:3": 0.11}, {"fog": [0.25] * 5, "noise:3": [0.11]})
    md, page = write_report(report, tmp_path / "robust")
    text, page_text = md.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")
    assert _md_row(text, TEACHER, "Robustness") == [TEACHER, "0.373", "0.300", "0.200", "0.250", "67.0", "100.0"]
    assert _md_row(text, KD, "Robustness") == [KD, "0.287", "0.250", "0.110", "0.180", f"{100 * 0.18 / 0.287:.1f}",
                                               "72.0"]
    assert NO_KD not in text.split("## Robustness")[1].split("##")[0]  # not scored: no row
    assert _html_rows(page_text.split("<h2>Robustness</h2>")[1].split("<h2>")[0])[KD][1:3] == ["0.287", "0.250"]
    if pytest.importorskip("matplotlib"):
        assert page_text.count(IMG_PREFIX) == 4  # latency, GFLOPs, size, robustness


def test_the_kd_column_shows_the_last_epoch_with_kd_on(tmp_path: Path) -> None:
    """KD turned off for the final (close_mosaic) epochs logs 0: the column shows the last epoch that distilled."""
    rows = [_row(e, 0.05 * e, 6.0 - e) for e in (1, 2, 3, 4, 5)]
    for row in rows[3:]:  # epochs 4 and 5: KD off, every KD loss 0
        row[5] = row[6] = 0.0
    off_late = _csv(tmp_path / "late" / "results.csv", rows, pad=False)
    last_off = _csv(tmp_path / "one" / "results.csv", [rows[i] for i in (0, 1, 2, 3)], pad=False)
    never = _csv(tmp_path / "never" / "results.csv", rows[3:], pad=False)
    md, page = _written(tmp_path, [TrainingRun("late", off_late), TrainingRun("one", last_off),
                                   TrainingRun("never", never)])
    assert "| KD losses (last epoch with KD on) |" in md and "<th>KD losses (last epoch with KD on)</th>" in page
    assert _md_row(md, "late", "Training")[-1] == ("train/kd_logit 3.0000, train/kd_box 0.1333 "
                                                   "(epoch 3; KD off in epochs 4-5)")
    assert _md_row(md, "one", "Training")[-1] == ("train/kd_logit 3.0000, train/kd_box 0.1333 "
                                                  "(epoch 3; KD off in epoch 4)")
    assert _md_row(md, "never", "Training")[-1] == "KD off in every epoch"
    assert _html_rows(page.split("<h2>Training</h2>")[1])["late"] == _md_row(md, "late", "Training")


def test_the_report_says_which_images_every_map_was_measured_on(tmp_path: Path) -> None:
    report = _report(tmp_path, [])
    report.eval_images, report.eval_total = 50, 128
    md, page = (p.read_text(encoding="utf-8") for p in write_report(report, tmp_path / "few"))
    line = ("mAP50-95 and mAP50 of every artifact on the first 50 of the 128 images of the val split of "
            "datasets/coco8.yaml.")
    artifacts = md.split("## Artifacts\n", 1)[1].split("##", 1)[0]
    assert line in artifacts and html.escape(line) in page.split("<h2>Artifacts</h2>", 1)[1].split("<h2>", 1)[0]
    report.eval_images = 128
    md, _ = write_report(report, tmp_path / "all")
    assert "on all 128 images of the val split of datasets/coco8.yaml." in md.read_text(encoding="utf-8")


@pytest.mark.parametrize(("limit", "expected"), [(None, (4, 4)), (2, (2, 4)), (10, (4, 4))])
def test_the_images_measured_are_the_first_eval_limit_of_the_val_split(tmp_path, coco8_yaml, limit, expected):
    from detdistill.pipeline.config import validate
    from detdistill.pipeline.context import StageContext
    from detdistill.pipeline.measure_stages import eval_images
    from detdistill.pipeline.stages import StageCache

    cfg = validate({"data": {"yaml": str(coco8_yaml)}, "teacher": {"weights": "yolov8n"}, "student": {"prune": {}},
                    "measure": {"eval_limit": limit}})
    assert eval_images(StageContext(cfg, tmp_path, StageCache(tmp_path)), coco8_yaml) == expected


def test_scatter_names_do_not_overlap_where_artifacts_score_and_run_alike() -> None:
    """Three students within 0.3 ms and 0.002 mAP of each other (as a first run on a CPU measures them): each
    name is drawn once, whole, apart from every other name and outside the axes' points."""
    pytest.importorskip("matplotlib")
    from matplotlib.text import Text

    from detdistill.pipeline.report.plots import _scatter

    names = ["teacher (FP32 ONNX)", "student, no KD (FP32 ONNX)", "student, KD (FP32 ONNX)",
             "student, KD (INT8 ONNX, tensorrt)", "student, QAD (INT8 Q/DQ ONNX)"]
    points = [(0, names[0], 15.8, 0.057, 12.0), (1, names[1], 6.7, 0.002, 4.0), (2, names[2], 7.0, 0.002, 4.0),
              (3, names[3], 7.5, 0.003, 1.2), (4, names[4], 9.2, 0.020, 1.2)]
    fig = _scatter(points, "median inference latency (ms)", "accuracy vs latency")
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    texts = fig.findobj(lambda a: isinstance(a, Text) and a.get_text() in names)
    assert sorted(t.get_text() for t in texts) == sorted(names)
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i, a in enumerate(boxes):
        assert 0 <= a.x0 and a.x1 <= fig.bbox.width, texts[i].get_text()  # not cut off at the figure's edge
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (texts[i].get_text(), a, b)
        assert not a.overlaps(fig.axes[0].get_window_extent(renderer))  # nothing written over the points


def test_a_quantization_aware_onnx_is_noted_as_float_sized(tmp_path: Path) -> None:
    kd = Artifact("student_kd", "pt", tmp_path / "kd.pt", tmp_path / "kd.pt", 224)
    qad = Artifact("student_kd", "pt", tmp_path / "q.pt", tmp_path / "q.pt", 224, precision="int8", method="qad")
    results = [ArtifactResult(qad.exported(tmp_path / "q.onnx"), 8.47, None, None, 0.25, 0.4, {}, "simulated"),
               ArtifactResult(kd.exported(tmp_path / "kd.onnx", precision="int8", method="ptq", target="cpu"), 2.5,
                              None, None, 0.26, 0.41, {}, "onnxruntime CPU"),
               ArtifactResult(qad, 8.4, None, None, 0.25, 0.4, {}, "pytorch")]
    assert [r.note for r in results] == [QAD_ONNX_NOTE, "", ""]
    assert ArtifactResult(qad.exported(tmp_path / "q.onnx"), 8.47, None, None, None, None, note="mine").note == "mine"
