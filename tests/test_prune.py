"""`detdistill prune`: the pruned teacher reaches its budget, keeps ultralytics' classes and the head's outputs,
loads with plain YOLO(path), trains, exports to ONNX with parity, and the CLI rejects bad input clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from detdistill.prune import PruneConfig, PruneError, count_gflops, prune_checkpoint
from detdistill.prune.cli import register

TARGET = 0.5


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # two verbs, like the real app (typer flattens a one-command app)
    return app


def _run(app, *args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, teacher_pt, app):
    """The COCO teacher pruned to half its GFLOPs once, through the CLI (the fixtures folder is read-only)."""
    base = tmp_path_factory.mktemp("prune")
    pt = base / "teacher.pt"
    shutil.copy(teacher_pt, pt)
    out = base / "half pruned.pt"  # the next command it prints quotes a path with a space, to paste as it is
    res = _run(app, "prune", pt, "--target", TARGET, "--imgsz", 320, "-o", out)
    assert res.exit_code == 0, res.output
    assert "GFLOPs @320" in res.output and f"detdistill train --teacher {pt} --student '{out}'" in res.output
    assert "note: nothing was refitted (no --calib)" in res.output
    return pt, out


def _raw_outputs(model, imgsz: int = 320) -> list[torch.Tensor]:
    model = model.float().eval()
    with torch.no_grad():
        _, preds = model(torch.zeros(1, 3, imgsz, imgsz))
    return [preds["boxes"], preds["scores"]]


def test_reaches_target_and_keeps_outputs(pruned):
    from ultralytics import YOLO

    teacher_pt, out = pruned
    teacher, student = YOLO(str(teacher_pt)).model, YOLO(str(out)).model
    ratio = count_gflops(student.float(), 320) / count_gflops(teacher.float(), 320)
    assert TARGET - 0.15 < ratio <= TARGET
    assert [t.shape for t in _raw_outputs(student)] == [t.shape for t in _raw_outputs(teacher)]
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_widths_are_multiples_of_round_to_and_classes_kept(pruned):
    from ultralytics import YOLO
    from ultralytics.nn.modules import C2f, Conv, Detect

    teacher_pt, out = pruned
    teacher, student = YOLO(str(teacher_pt)).model, YOLO(str(out)).model
    assert [type(m) for m in student.modules()] == [type(m) for m in teacher.modules()]  # no custom classes
    before = {n: m.out_channels for n, m in teacher.named_modules() if isinstance(m, torch.nn.Conv2d)}
    changed = 0
    for name, m in student.named_modules():
        if isinstance(m, torch.nn.Conv2d) and m.out_channels != before[name]:
            assert m.out_channels % 8 == 0, (name, m.out_channels)
            changed += 1
        if isinstance(m, C2f):
            assert m.cv1.conv.out_channels == 2 * m.c and m.cv1.bn.num_features == 2 * m.c
        if isinstance(m, Conv):
            assert m.bn.num_features == m.conv.out_channels
    assert changed > 10
    head = student.model[-1]
    assert isinstance(head, Detect) and (head.nc, head.reg_max, head.no) == (80, 16, 80 + 64)
    assert [s[-1].out_channels for s in head.cv2] == [64] * 3 and [s[-1].out_channels for s in head.cv3] == [80] * 3


def test_checkpoint_record_and_yaml(pruned):
    from ultralytics.nn.tasks import DetectionModel

    teacher_pt, out = pruned
    ckpt = torch.load(str(out), map_location="cpu", weights_only=False)
    assert {"model", "train_args", "date", "version", "detdistill_prune"} <= set(ckpt)
    rec = ckpt["detdistill_prune"]
    assert rec["source"] == str(teacher_pt) and rec["target"] == TARGET and rec["metric"] == "gflops"
    assert rec["gflops_after"] / rec["gflops_before"] <= TARGET and rec["params_after"] < rec["params_before"]
    assert rec["importance"] == "var" and ckpt["model"].yaml["pruned"] is True
    DetectionModel(ckpt["model"].yaml, verbose=False)  # the extra key does not break a rebuild


def test_loads_and_predicts(pruned):
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    _, out = pruned
    results = YOLO(str(out)).predict(str(ASSETS / "bus.jpg"), imgsz=320, verbose=False)
    assert len(results) == 1 and results[0].boxes is not None


def test_exports_to_onnx_with_parity(pruned, tmp_path):
    pytest.importorskip("onnxruntime")
    from detdistill.export.onnx_export import default_parity_images, export_onnx

    _, out = pruned
    onnx_path = export_onnx(out, tmp_path / "half.onnx", imgsz=320, parity_images=default_parity_images())
    assert onnx_path.is_file()


def test_trains_one_step(pruned, coco8_yaml, tmp_path):
    train = pytest.importorskip("detdistill.distill.student_trainer")
    from ultralytics import YOLO

    _, out = pruned
    widths = {n: m.out_channels for n, m in YOLO(str(out)).model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    model = YOLO(str(out))
    model.train(trainer=train.StudentTrainer, data=str(coco8_yaml), epochs=1, imgsz=160, batch=4, workers=0,
                device="cpu", plots=False, val=False, amp=False, project=str(tmp_path), name="ft", exist_ok=True)
    last = Path(model.trainer.last)
    trained = YOLO(str(last)).model  # the EMA checkpoint round-trips the pruned widths
    assert {n: m.out_channels for n, m in trained.named_modules() if isinstance(m, torch.nn.Conv2d)} == widths
    before = {k: v.float() for k, v in YOLO(str(out)).model.state_dict().items() if v.ndim == 4}
    after = {k: v.float() for k, v in trained.state_dict().items() if v.ndim == 4}
    diffs = [(after[k] - w).abs().mean() / w.abs().mean() for k, w in before.items() if ".dfl." not in k]
    print(f"relative change of conv weights after one step: max {max(diffs):.2e}")
    assert max(diffs) > 0  # an optimizer step happened ...
    assert max(diffs) < 0.05  # ... on the inherited weights, not on a re-initialised model


@pytest.mark.parametrize("family", ["yolov8n", "yolo11n"])
def test_random_init_families(family, tmp_path, app):
    """Randomly initialised v8 (C2f) and 11 (C3k2, C2PSA attention, DWConv head) models prune and still run."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    src = tmp_path / f"{family}.pt"
    torch.save({"model": DetectionModel(f"{family}.yaml", nc=3, verbose=False), "train_args": {}}, src)
    res = prune_checkpoint(src, tmp_path / "p.pt", PruneConfig(target=0.6, imgsz=320))
    assert 0.45 < res.ratio <= 0.6
    assert res.untrained_source  # the CLI warns instead of suggesting it as a teacher
    if family == "yolov8n":
        out = _run(app, "prune", src, "--target", 0.6, "--imgsz", 320, "-o", tmp_path / "cli.pt")
        assert out.exit_code == 0 and "holds untrained weights" in out.output and "next:" not in out.output
        assert " MB " in out.output  # file sizes in MB, as the pipeline's report gives them
    if family == "yolo11n":
        assert any("C2PSA" in note for note in res.ignored)
    model = YOLO(str(res.path)).model
    outs = _raw_outputs(model)
    assert outs[0].shape == (1, 64, 2100) and outs[1].shape == (1, 3, 2100)
    assert all(w.after % 8 == 0 for w in res.layers)


def test_cli_rejects_bad_input(app, tmp_path, coco8_yaml):
    out = _run(app, "prune", tmp_path / "nope.pt")
    assert out.exit_code == 2 and "does not exist" in out.output
    (tmp_path / "m.txt").write_text("x")
    out = _run(app, "prune", tmp_path / "m.txt")
    assert out.exit_code == 2 and "should end in .pt" in out.output
    fake = tmp_path / "fake.pt"
    fake.write_text("not a checkpoint")
    for bad in ("0", "1", "1.5", "-0.2"):
        out = _run(app, "prune", fake, "--target", bad)
        assert out.exit_code == 2 and "--target must be between 0 and 1" in out.output
    out = _run(app, "prune", fake, "--metric", "latency")
    assert out.exit_code == 2 and "--metric must be gflops or params" in out.output
    out = _run(app, "prune", fake, "--calib", coco8_yaml, "--calib-images", 0)
    assert out.exit_code == 2 and "--calib-images must be at least 1" in out.output
    for options, named in ((("--no-refit",), "--no-refit sets"), (("--calib-images", 64), "--calib-images sets"),
                           (("--refit", "--calib-images", 64), "--calib-images and --refit set")):
        out = _run(app, "prune", fake, *options)  # ignored without --calib before
        assert out.exit_code == 2 and named in out.output and "no --calib is given: add --calib IMAGES" in out.output
    out = _run(app, "prune", fake, "--importance", "magic")
    assert out.exit_code == 2 and "--importance must be one of" in out.output
    for option, value, message in (("--max-layer-ratio", 1, "--max-layer-ratio must be between 0 and 1"),
                                   ("--round-to", 0, "--round-to must be at least 1, got 0"),
                                   ("--imgsz", 100, "--imgsz must be a positive multiple of 32"),
                                   ("--calib", tmp_path / "none", "--calib source")):
        out = _run(app, "prune", fake, option, value)  # PruneConfig's check, named as the option
        assert out.exit_code == 2 and message in out.output, out.output
    out = _run(app, "prune", fake)
    assert out.exit_code == 2 and "could not load" in out.output


def test_unusable_outputs_and_calibration_images_are_refused_before_pruning(app, tmp_path, teacher_pt):
    broken = tmp_path / "frames"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 cut off")
    out = _run(app, "prune", teacher_pt, "--calib", broken, "-o", tmp_path / "p.pt")
    assert out.exit_code == 2 and "none of the 1 calibration images is usable" in out.output, out.output
    assert "step" not in out.output and not (tmp_path / "p.pt").exists()  # refused before the first pruning step
    out = _run(app, "prune", teacher_pt, "-o", tmp_path)
    assert out.exit_code == 2 and "is a folder; pass a file path such as" in out.output and "step" not in out.output
    out = _run(app, "prune", teacher_pt, "-o", "/sys/pruned.pt")  # a system folder no user can write to
    assert out.exit_code == 2 and "cannot write /sys/pruned.pt" in out.output and "step" not in out.output


def test_cli_rejects_non_detection_model(app, tmp_path):
    from ultralytics.nn.tasks import ClassificationModel

    cls = tmp_path / "cls.pt"
    torch.save({"model": ClassificationModel("yolov8n-cls.yaml", nc=10, verbose=False), "train_args": {}}, cls)
    out = _run(app, "prune", cls)
    assert out.exit_code == 2 and "only YOLO detection models" in out.output
    with pytest.raises(PruneError, match="only YOLO detection models"):
        prune_checkpoint(cls, tmp_path / "x.pt")
