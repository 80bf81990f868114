"""detdistill average: the weight average of two fine-tunes of one student, and what it refuses."""

from __future__ import annotations

import copy

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch", reason="averaging checkpoints needs torch")

from detdistill.weight_average import AverageError, average_checkpoints  # noqa: E402


def _variant(teacher_pt, path, change):
    """The teacher checkpoint with ``change(model)`` applied to its (float) model, saved as ultralytics saves one."""
    ckpt = torch.load(teacher_pt, map_location="cpu", weights_only=False)
    model = copy.deepcopy(ckpt.get("ema") or ckpt["model"]).float()
    change(model)
    ckpt["model"], ckpt["ema"] = model.half(), None
    torch.save(ckpt, path)
    return path


def _shaken(model, scale=0.03, seed=0):
    """Every convolution kernel moved by noise of ``scale`` times its own spread, and every BatchNorm's running
    variance scaled (a stand-in for a fine-tune)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.add_(torch.randn(p.shape, generator=g) * p.std() * scale)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.mul_(1 + scale)


def _floats(path):
    from detdistill.models import load_detection_checkpoint

    return {k: v for k, v in load_detection_checkpoint(path)[0].float().state_dict().items() if v.is_floating_point()}


def test_the_average_is_the_interpolation_of_the_two_and_loads_and_scores_as_a_model(teacher_pt, coco8_yaml,
                                                                                      tmp_path):
    from ultralytics import YOLO

    from detdistill.export.evaluate import evaluate

    other = _variant(teacher_pt, tmp_path / "shaken.pt", lambda m: _shaken(m, 0.5))
    a, b = _floats(teacher_pt), _floats(other)
    result = average_checkpoints(teacher_pt, other, 0.25, tmp_path / "avg.pt")
    assert 0.8 < result.cosine < 0.999  # moved, yet one start
    avg = _floats(result.path)
    for key in ("model.0.conv.weight", "model.22.cv3.2.2.weight", "model.9.cv2.bn.running_var"):
        assert not torch.allclose(a[key], b[key], atol=1e-3), key  # the two differ there
        expected = (0.75 * a[key] + 0.25 * b[key]).half().float()  # stored in half precision, as ultralytics does
        assert torch.allclose(avg[key], expected, rtol=2e-3, atol=1e-3), key
    record = YOLO(str(result.path)).ckpt["detdistill_average"]  # plain ultralytics loads it
    assert (record["weight"], record["first"], record["second"]) == (0.25, str(teacher_pt), str(other))
    assert len(record["first_sha256"]) == 64 and record["first_sha256"] != record["second_sha256"]
    # the ends are the two models themselves: their scores, not a mixture's
    ends = [average_checkpoints(teacher_pt, other, w, tmp_path / f"w{w}.pt").path for w in (0, 1)]
    scores = [evaluate(p, coco8_yaml, imgsz=320).map50_95 for p in (teacher_pt, other, *ends)]
    assert scores[0] == pytest.approx(scores[2], abs=2e-3) and scores[1] == pytest.approx(scores[3], abs=2e-3)
    assert scores[1] < scores[0] - 0.02  # the shaken copy is a worse model: the two ends differ


def test_what_cannot_be_averaged_is_refused_naming_why(teacher_pt, tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    def built(cfg, path):
        torch.manual_seed(0)
        model = DetectionModel(cfg, nc=80, verbose=False)
        return _variant(teacher_pt, path, lambda m: m.load_state_dict(model.state_dict()))

    fresh = built("yolov8n.yaml", tmp_path / "fresh.pt")  # the same architecture, never trained from the teacher
    with pytest.raises(AverageError, match=r"do not look like fine-tunes of one start \(cosine similarity of their "
                                           r"weights 0\.\d\d, under 0\.8\)"):
        average_checkpoints(teacher_pt, fresh, 0.5, tmp_path / "x.pt")
    wider = tmp_path / "wider.pt"
    ckpt = torch.load(teacher_pt, map_location="cpu", weights_only=False)
    ckpt["model"], ckpt["ema"] = DetectionModel("yolov8s.yaml", nc=80, verbose=False).half(), None
    torch.save(ckpt, wider)
    with pytest.raises(AverageError, match=r"differ in architecture \(model\.0\.conv\.weight: \(16, 3, 3, 3\) against "
                                           r"\(32, 3, 3, 3\)\)"):
        average_checkpoints(teacher_pt, wider, 0.5, tmp_path / "x.pt")
    renamed = _variant(teacher_pt, tmp_path / "renamed.pt",
                       lambda m: setattr(m, "names", {i: f"c{i}" for i in range(80)}))
    with pytest.raises(AverageError, match="predict other classes"):
        average_checkpoints(teacher_pt, renamed, 0.5, tmp_path / "x.pt")
    for weight in (1.5, -0.1, True, "0.5"):
        with pytest.raises(AverageError, match="weight is the share of the second checkpoint, from 0 to 1"):
            average_checkpoints(teacher_pt, teacher_pt, weight, tmp_path / "x.pt")
    for out, words in ((teacher_pt, "would overwrite the input"), (tmp_path, "is a folder"),
                       (tmp_path / "x.onnx", "should end in .pt")):
        with pytest.raises(AverageError, match=words):
            average_checkpoints(teacher_pt, renamed, 0.5, out)
    assert not (tmp_path / "x.pt").exists()


def test_the_cli_writes_the_average_and_names_bad_input(teacher_pt, tmp_path):
    from detdistill.cli import app

    other = _variant(teacher_pt, tmp_path / "tuned.pt", _shaken)
    out = CliRunner().invoke(app, ["average", str(teacher_pt), str(other), "--weight", "0.3", "-o",
                                   str(tmp_path / "avg.pt")], terminal_width=300)
    assert out.exit_code == 0 and (tmp_path / "avg.pt").is_file(), out.output
    assert "0.7 x" in out.output and "cosine similarity of their weights 0.99" in out.output
    out = CliRunner().invoke(app, ["average", str(teacher_pt), str(tmp_path / "missing.pt")], terminal_width=300)
    assert out.exit_code == 2 and "second checkpoint" in out.output and "does not exist" in out.output
