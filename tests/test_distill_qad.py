"""Quantization-aware distillation on coco8 with the COCO teacher: the student alone is fake-quantized, KD
losses supervise it, a run resumes with its learned ranges, the checkpoint loads with plain ultralytics, and
the export is a Q/DQ ONNX that the runtime scores as simulated TensorRT INT8."""

from __future__ import annotations

import json
import re
import shutil
import warnings
import subprocess
import sys

import onnx
import pytest
from conftest import Interrupted, stop_after_first_save
import torch

from detdistill.distill import DistillationTrainer, api
from detdistill.distill.qad import QADError, is_fake_quantized, require_modelopt

pytest.importorskip("modelopt.torch.quantization", reason="QAD needs NVIDIA ModelOpt (pip install 'detdistill[qad]')")
TRAIN_ARGS = dict(imgsz=160, batch=4, workers=0, plots=False, close_mosaic=0, val=True, exist_ok=True, seed=0)


@pytest.fixture(scope="module")
def qad_run(tmp_path_factory, teacher_pt, coco8_yaml):
    """2 epochs of QAD of the teacher into its own copy (self-distillation), interrupted after epoch 1, then resumed."""
    from ultralytics import YOLO

    tmp = tmp_path_factory.mktemp("qad")
    teacher = shutil.copy(teacher_pt, tmp / "teacher.pt")
    student = shutil.copy(teacher_pt, tmp / "student.pt")
    model = YOLO(str(student))
    model.add_callback("on_model_save", stop_after_first_save)
    with pytest.raises(Interrupted):
        model.train(trainer=DistillationTrainer.configure(teacher, "default", int8=True), data=str(coco8_yaml),
                    epochs=2, project=str(tmp), name="run", **TRAIN_ARGS)
    interrupted = torch.load(tmp / "run" / "weights" / "last.pt", map_location="cpu", weights_only=False)
    best = api.resume(tmp / "run" / "weights" / "last.pt")
    return tmp, interrupted, best


@pytest.mark.slow
def test_only_the_student_is_fake_quantized_and_the_ranges_survive_resume(qad_run):
    from ultralytics.nn.tasks import load_checkpoint

    from detdistill.distill.model import KDModel

    _, interrupted, best = qad_run
    state = interrupted["modelopt"]
    assert state and any(k.startswith("model.0.") and "input_quantizer" in k for k in state["ranges"])
    assert interrupted["ema"].kd_config["int8"] is True and isinstance(interrupted["ema"], KDModel)
    model, ckpt = load_checkpoint(best)
    assert ckpt["modelopt"] and is_fake_quantized(model)
    assert model.model[0].conv.input_quantizer.is_enabled and model.model[0].conv.weight_quantizer.is_enabled
    head_output = model.model[-1].cv3[0][2]  # the class-score output conv stays in float, as in PTQ
    assert not head_output.input_quantizer.is_enabled and not head_output.weight_quantizer.is_enabled
    assert ckpt["epoch"] == -1 and len(ckpt["train_results"]["epoch"]) == 2  # both epochs, the second resumed


@pytest.mark.slow
def test_a_pruned_student_resumes_its_int8_training(tmp_path, teacher_pt, coco8_yaml):
    """A pruned student's module comes back from ``last.pt`` with its quantizers: resume keeps them as they are,
    ranges included (ModelOpt refuses a second restore: "Model already has modelopt state")."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import load_checkpoint

    from detdistill.prune import prune_checkpoint

    student = prune_checkpoint(teacher_pt, tmp_path / "pruned.pt", target=0.8, imgsz=160).path
    model = YOLO(str(student))
    model.add_callback("on_model_save", stop_after_first_save)
    with pytest.raises(Interrupted):
        model.train(trainer=DistillationTrainer.configure(str(teacher_pt), "default", int8=True), data=str(coco8_yaml),
                    epochs=2, project=str(tmp_path), name="run", **TRAIN_ARGS)
    last = tmp_path / "run" / "weights" / "last.pt"
    ranges = torch.load(last, map_location="cpu", weights_only=False)["modelopt"]["ranges"]
    model, ckpt = load_checkpoint(api.resume(last))
    assert len(ckpt["train_results"]["epoch"]) == 2 and model.yaml.get("pruned")
    assert is_fake_quantized(model) and ckpt["modelopt"]["ranges"].keys() == ranges.keys()
    for key, value in ranges.items():  # not calibrated again
        assert torch.allclose(ckpt["modelopt"]["ranges"][key].float(), value.float(), rtol=1e-4), key


@pytest.mark.slow
def test_checkpoint_loads_with_plain_ultralytics(qad_run, coco8_yaml):
    _, _, best = qad_run
    image = next((coco8_yaml.parent / "images" / "val").glob("*.jpg"))
    code = (
        "import sys; sys.modules['detdistill'] = None\n"
        "from ultralytics import YOLO\n"
        "from ultralytics.utils.torch_utils import is_qat\n"
        f"m = YOLO({str(best)!r}); r = m.predict({str(image)!r}, imgsz=160, verbose=False)[0]\n"
        "print('OK', is_qat(m.model), len(r.boxes))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK True" in out.stdout


@pytest.mark.slow
def test_export_is_qdq_onnx_scored_as_simulated_tensorrt_int8(qad_run, coco8_yaml):
    from detdistill.export.evaluate import evaluate
    from detdistill.export.onnx_export import default_parity_images, export_onnx
    from detdistill.export.quantize import quantize_onnx

    tmp, _, best = qad_run
    onnx_path = export_onnx(best, tmp / "qad.onnx", imgsz=160, parity_images=default_parity_images())
    proto = onnx.load(str(onnx_path))
    assert sum(n.op_type == "QuantizeLinear" for n in proto.graph.node) > 50
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["quantization"])
    assert meta["method"] == "qad" and meta["target"] == "tensorrt" and meta["scheme"] == "s8s8"
    onnx_map = evaluate(onnx_path, coco8_yaml)
    assert onnx_map.evaluator.startswith("simulated TensorRT INT8")
    pt_map = evaluate(best, coco8_yaml, imgsz=160)
    assert pt_map.map50_95 > 0.2 and abs(onnx_map.map50_95 - pt_map.map50_95) < 0.05, (onnx_map, pt_map)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_onnx(onnx_path, default_parity_images())
    old = tmp / "qad-opset12.onnx"
    with pytest.raises(ValueError, match=r"--opset 12 is not supported for a quantization-aware \(--int8\) model"):
        export_onnx(best, old, imgsz=160, opset=12)  # torch wrote an invalid file at opset 11-12
    assert not old.exists()


def test_missing_modelopt_is_explained(monkeypatch, teacher_pt, coco8_yaml):
    from detdistill.distill.api import TrainJob, run_training

    monkeypatch.setitem(sys.modules, "modelopt.torch.quantization", None)
    with pytest.raises(QADError, match=r"needs NVIDIA ModelOpt.*pip install 'detdistill\[qad\]'"):
        require_modelopt()
    monkeypatch.setattr(api, "fit", lambda *a, **k: pytest.fail("a training started"))
    with pytest.raises(QADError, match="needs NVIDIA ModelOpt"):  # run_training: the CLI's, the pipeline's
        run_training(TrainJob(student=teacher_pt, teacher=teacher_pt, data=coco8_yaml, int8=True))
    with pytest.raises(QADError, match="needs NVIDIA ModelOpt"):
        api.train(teacher_pt, teacher_pt, coco8_yaml, int8=True, epochs=1)


def test_int8_from_scratch_is_refused_before_training(teacher_pt, coco8_yaml, tmp_path):
    from detdistill.distill.api import TrainJob, TrainInputError, run_training

    job = TrainJob(student="yolov8n.yaml", teacher=teacher_pt, data=coco8_yaml, int8=True,
                   train_args={"project": str(tmp_path), "name": "qad"})
    with pytest.raises(TrainInputError, match=r"fine-tunes a trained student.*yolov8n.yaml.*best.pt"):
        run_training(job)
    assert not (tmp_path / "qad").exists()  # nothing started


def test_pruning_an_int8_fine_tuned_checkpoint_is_refused(qad_run, tmp_path):
    from detdistill.prune import prune_checkpoint
    from detdistill.prune.models import PruneError

    with pytest.raises(PruneError, match="INT8 fine-tuned checkpoint .*prune the float model"):
        prune_checkpoint(qad_run[2], tmp_path / "pruned.pt", target=0.5)
    assert not (tmp_path / "pruned.pt").exists()


def test_averaging_an_int8_fine_tuned_checkpoint_is_refused(qad_run, teacher_pt, tmp_path):
    from detdistill.weight_average import AverageError, average_checkpoints

    with pytest.raises(AverageError, match="is INT8 fine-tuned .*average the float students, then fine-tune"):
        average_checkpoints(teacher_pt, qad_run[2], 0.5, tmp_path / "avg.pt")
    assert not (tmp_path / "avg.pt").exists()


def test_an_int8_fine_tuned_checkpoint_is_refused_as_a_teacher(qad_run, coco8_yaml):
    from typer.testing import CliRunner

    from detdistill.cli import app
    from detdistill.distill.teacher import TeacherError, load_teacher

    best = qad_run[2]
    with pytest.raises(TeacherError, match="INT8 fine-tuned checkpoint .*pass the float checkpoint it was fine-tuned"):
        load_teacher(best)
    # `train --int8` of a QAD output without --teacher would make it its own (INT8-tuned) teacher
    out = CliRunner().invoke(app, ["train", "--int8", "--student", str(best), "--data", str(coco8_yaml), "epochs=1"],
                             terminal_width=400)
    said = " ".join(out.output.split())
    assert out.exit_code == 2 and f"the student {best} is already INT8 fine-tuned, so it cannot be its own teacher" \
        in said and "--teacher" in said, out.output
    # scoring it is another matter: tools/bench_qdq_fidelity.py reads its class names to score it (it crashed)
    from detdistill.pipeline.measure_stages import teacher_score_map

    assert teacher_score_map(best, coco8_yaml)[0] is None  # coco8's 80 classes: scored as they are


def test_a_checkpoint_given_to_quantize_is_sent_to_export_and_an_int8_one_told_it_needs_no_quantizing(qad_run,
                                                                                                      teacher_pt):
    from typer.testing import CliRunner

    from detdistill.cli import app
    from detdistill.export.quantize import quantize_onnx

    images = qad_run[0]
    before = sorted(images.rglob("*.onnx"))
    for model, said in ((qad_run[2], "is an INT8 (quantization-aware, --int8) checkpoint: `detdistill export"),
                        (teacher_pt, "is a PyTorch checkpoint, and quantize takes an FP32 ONNX: export it first")):
        out = CliRunner().invoke(app, ["quantize", str(model), "--data", str(images)], terminal_width=400)
        assert out.exit_code == 2 and said in out.output, out.output
        with pytest.raises(ValueError, match=re.escape(said)):  # from Python too
            quantize_onnx(model, images)
    assert sorted(images.rglob("*.onnx")) == before  # nothing exported or quantized


def test_loading_a_qad_checkpoint_prints_no_modelopt_device_warning(qad_run):
    from detdistill.models import load_detection_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = load_detection_checkpoint(qad_run[2])
    assert is_fake_quantized(model)
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "Could not identify the device" in m], said
