"""Real distillation runs on coco8 with the COCO teacher fixture: KD columns, student-only
checkpoints that load with plain YOLO, predict, resume after an interruption, and input errors."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Interrupted, stop_after_first_save
import torch

from detdistill.distill import DistillationTrainer, api
from detdistill.distill.students import scaled_model_yaml

TRAIN_ARGS = dict(imgsz=160, batch=4, workers=0, plots=False, close_mosaic=0, val=True, exist_ok=True, seed=0)
# One loss of each family (feature, logit, box), so that every path runs in a real training loop.
ALL_FAMILIES = {
    "losses": [{"type": "cwd"}, {"type": "logit"}, {"type": "box"}],
    "region": "teacher+gt",
    "schedule": {"kind": "cosine", "final": 0.1},
}


def _rows(run: Path) -> list[dict]:
    with (run / "results.csv").open() as f:
        return [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, teacher_pt, coco8_yaml):
    """A 2-epoch run of a narrow student, interrupted right after epoch 1's checkpoint was written."""
    from ultralytics import YOLO

    tmp = tmp_path_factory.mktemp("kd")
    teacher = shutil.copy(teacher_pt, tmp / "teacher.pt")
    student = scaled_model_yaml("yolov8", width=0.0625, out=tmp / "yolov8n-quarter.yaml")
    model = YOLO(str(student))
    model.add_callback("on_model_save", stop_after_first_save)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("ultralytics").addHandler(handler)
    try:
        with pytest.raises(Interrupted):
            model.train(
                trainer=DistillationTrainer.configure(teacher, ALL_FAMILIES), data=str(coco8_yaml), epochs=2,
                project=str(tmp), name="run", **TRAIN_ARGS,
            )
    finally:
        logging.getLogger("ultralytics").removeHandler(handler)
    return tmp / "run", Path(teacher), lines


@pytest.mark.slow
def test_interrupted_checkpoint_holds_student_and_distiller_not_teacher(interrupted_run):
    from ultralytics.nn.tasks import load_checkpoint

    from detdistill.distill.model import KDModel

    run, teacher, log = interrupted_run
    rows = _rows(run)
    assert len(rows) == 1
    # the teacher's parameters are frozen without a log line each; the student's DFL still gets ultralytics' line
    assert not [line for line in log if line.startswith("Freezing layer 'teacher_model.")]
    assert any(line.startswith("detdistill: teacher ") and "(frozen)" in line for line in log)
    assert any(line.startswith("Freezing layer 'student_model.") for line in log)
    for col in ("train/kd_cwd", "train/kd_logit", "train/kd_box"):  # one column per KD loss
        assert float(rows[0][col]) > 0
    assert float(rows[0]["val/kd_cwd"]) == 0  # KD is a training signal; validation reports the task loss only
    weights, ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert isinstance(weights, KDModel) and weights.teacher_model is None
    assert weights.kd_config["teacher"] == str(teacher.resolve())
    assert ckpt["epoch"] == 0


@pytest.mark.slow
def test_resume_finishes_with_student_only_checkpoints(interrupted_run, coco8_yaml, tmp_path, monkeypatch):
    from detdistill.distill.distiller import Distiller

    run, _, _ = interrupted_run
    refits = []
    monkeypatch.setattr(Distiller, "_fit_adapters", lambda self, *args: refits.append(args))
    # a stop after epoch 2's row was written and before its last.pt: the row of an epoch the resume trains again
    results = run / "results.csv"
    header, first = results.read_text().splitlines()[:2]
    results.write_text("\n".join([header, first, "2" + first[first.index(","):]]) + "\n")
    best = api.resume(run / "weights" / "last.pt")
    assert not refits  # the resumed run keeps the checkpoint's trained adapters instead of fitting new ones
    rows = _rows(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # epoch 2 once, from the resumed training
    assert rows[1]["train/kd_cwd"] != rows[0]["train/kd_cwd"]
    # cosine schedule 1 -> 0.1 over the two epochs: the second epoch's KD terms shrink accordingly
    assert float(rows[1]["train/kd_cwd"]) < float(rows[0]["train/kd_cwd"])
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    assert type(ckpt["model"]).__name__ == "DetectionModel"
    n_params = sum(p.numel() for p in ckpt["model"].parameters())
    assert n_params < 1_000_000  # the narrow student, not the 3.2M-parameter teacher

    # The checkpoint loads and predicts with plain ultralytics, detdistill not even importable.
    image = next((coco8_yaml.parent / "images" / "val").glob("*.jpg"))
    code = (
        "import sys; sys.modules['detdistill'] = None\n"
        "from ultralytics import YOLO\n"
        f"r = YOLO({str(best)!r}).predict({str(image)!r}, imgsz=160, verbose=False)[0]\n"
        "print('OK', len(r.names), r.orig_shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK 80" in out.stdout


def _batch(size: int = 128) -> dict:
    return {
        "img": torch.rand(2, 3, size, size),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [2.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.2]]),
    }


def _kd_model(student, teacher, recipe: dict):
    """A train-mode KDModel of ``student`` under ``teacher`` (both with the 80 COCO classes) for ``recipe``."""
    from ultralytics.cfg import get_cfg

    from detdistill.distill import build_class_map, load_recipe
    from detdistill.distill.model import KDModel
    from detdistill.models import class_names

    student.args = get_cfg()
    names = class_names(teacher)
    return KDModel(student, teacher, load_recipe(recipe), build_class_map(names, names), {}).train()


def test_teacher_at_larger_image_size_is_aligned_to_student_grid(teacher_pt):
    from ultralytics.nn.tasks import DetectionModel

    from detdistill.distill import load_teacher

    teacher = load_teacher(teacher_pt)
    student = DetectionModel(str(scaled_model_yaml("yolov8", width=0.0625)), nc=80, verbose=False)
    model = _kd_model(student, teacher, {"losses": [{"type": "cwd"}, {"type": "logit"}], "teacher_scale": 1.5})
    assert model._teacher_forward(torch.rand(1, 3, 128, 128)).level_shapes == [(24, 24), (12, 12), (6, 6)]
    loss, items = model(_batch(128))  # the teacher sees 192 px, the student 128 px
    assert torch.isfinite(loss).all() and items["kd_cwd"] > 0 and items["kd_logit"] > 0
    loss.sum().backward()


def test_teacher_at_twice_the_size_distills_boxes_on_shifted_levels(teacher_pt):
    """teacher_scale 2: the teacher sees 256 px for the student's 128; its P4/P5 pair with the student's P3/P4."""
    from detdistill.distill import load_teacher

    teacher, student = load_teacher(teacher_pt), load_teacher(teacher_pt, fuse=False)
    for p in student.parameters():
        p.requires_grad_(True)
    model = _kd_model(student, teacher, {"losses": [{"type": "logit"}, {"type": "box"}], "teacher_scale": 2})
    assert model.distiller.level_shift == 1
    assert model._teacher_forward(torch.rand(1, 3, 128, 128)).level_shapes == [(32, 32), (16, 16), (8, 8)]
    loss, items = model(_batch(128))
    assert torch.isfinite(loss).all() and items["kd_logit"] > 0 and items["kd_box"] > 0
    loss.sum().backward()
    assert student.model[-1].cv3[0][2].weight.grad.abs().sum() > 0  # P3 class branch learns from the teacher's P4
    assert all(p.grad is None for p in teacher.parameters())


def test_mixed_heads_kd_step_gives_gradients(teacher_pt):
    """A YOLO26 student (no DFL) under a YOLOv8 teacher (DFL): box KD falls back to decoded boxes."""
    from ultralytics.nn.tasks import DetectionModel

    from detdistill.distill import load_teacher
    from detdistill.distill.box import DecodedBoxDistillation

    teacher = load_teacher(teacher_pt)
    model = _kd_model(DetectionModel("yolo26n.yaml", nc=80, verbose=False), teacher, ALL_FAMILIES)
    assert isinstance(model.distiller.losses["box"], DecodedBoxDistillation)
    loss, items = model(_batch())
    assert {"kd_cwd", "kd_logit", "kd_box"} <= set(items)
    loss.sum().backward()
    assert all(p.grad is None for p in model.teacher_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.distiller.adapters.parameters())


def test_bad_inputs_fail_before_training(tmp_path, teacher_pt, coco8_yaml, vehicles_yaml):
    from detdistill.distill import ClassMapError, RecipeError, TeacherError

    with pytest.raises(TeacherError, match="does not exist"):
        api.check_inputs("yolov8n.yaml", tmp_path / "missing.pt", coco8_yaml)
    with pytest.raises(TeacherError, match="'yolo26n.yaml' is a model config, with no trained weights"):
        api.check_inputs("yolov8n.yaml", "yolo26n.yaml", coco8_yaml)  # it said the file does not exist
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match="could not load teacher"):
        api.check_inputs("yolov8n.yaml", junk, coco8_yaml)
    with pytest.raises(ValueError, match="classify model"):
        api.check_inputs("yolov8n-cls.yaml", teacher_pt, coco8_yaml)
    with pytest.raises(RecipeError, match="needs DFL heads"):  # LD cannot teach a YOLO26 (no DFL) student
        api.check_inputs("yolo26n.yaml", teacher_pt, coco8_yaml, "ld")
    with pytest.raises(ValueError, match="strides .* differ"):  # a P3-P6 student under a P3-P5 teacher
        api.check_inputs("yolov8n-p6.yaml", teacher_pt, coco8_yaml)
    with pytest.raises(RecipeError, match=r"losses\[0\]\.tau"):
        api.check_inputs("yolov8n.yaml", teacher_pt, coco8_yaml, {"losses": [{"type": "logit", "tau": 2}]})
    # The vehicles data without its coco_classes block: 'Ambulance' matches no COCO class name.
    text = "\n".join(l for l in vehicles_yaml.read_text().splitlines() if not l.startswith(("coco_classes", "  ")))
    data = tmp_path / "vehicles.yaml"
    data.write_text(text.replace("train/images", str(vehicles_yaml.parent / "train/images")).replace(
        "valid/images", str(vehicles_yaml.parent / "valid/images")) + "\nnames: {0: Ambulance, 1: Bus, 2: Car, 3: Motorcycle, 4: Truck}\n")
    with pytest.raises(ClassMapError, match="Ambulance"):
        api.check_inputs("yolov8n.yaml", teacher_pt, data)
    _, cm = api.check_inputs("yolov8n.yaml", teacher_pt, data, class_map={"Ambulance": ["car", "truck"]})
    assert cm.sources[0] == (2, 7)


def test_teacher_precision_policy(monkeypatch):
    """bf16 autocast for the teacher on CPU when forced or natively supported; untouched on CUDA (the trainer's AMP)."""
    from detdistill.distill.teacher import TEACHER_BF16_ENV, cpu_has_native_bf16, teacher_autocast

    cpu = torch.device("cpu")
    monkeypatch.setenv(TEACHER_BF16_ENV, "1")
    with teacher_autocast(cpu):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with teacher_autocast(torch.device("cuda")):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setenv(TEACHER_BF16_ENV, "0")
    with teacher_autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.delenv(TEACHER_BF16_ENV)
    with teacher_autocast(cpu):
        assert torch.is_autocast_enabled("cpu") == cpu_has_native_bf16()


def _coco8_batch(coco8_yaml: Path, size: int = 224, first: int = 0) -> dict:
    """Four real coco8 images (from the ``first``-th) as a training batch (no boxes: the KD losses need none with
    ``region: teacher``)."""
    import cv2
    import numpy as np

    files = sorted((coco8_yaml.parent / "images").rglob("*.jpg"))[first : first + 4]
    images = np.stack([cv2.resize(cv2.imread(str(f)), (size, size))[:, :, ::-1] for f in files])
    return {
        "img": torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255,
        "batch_idx": torch.zeros(0),
        "cls": torch.zeros(0, 1),
        "bboxes": torch.zeros(0, 4),
    }


def test_teacher_thread_policy(monkeypatch):
    """The teacher gets its own thread on CPU when a core is left over by torch's threads (ultralytics trains on
    CPU with one core fewer than the machine has), never on CUDA; DETDISTILL_TEACHER_THREAD forces it."""
    import os

    from detdistill.distill.teacher import TEACHER_THREAD_ENV, spare_cpu_cores, teacher_runs_alongside

    cpu = torch.device("cpu")
    monkeypatch.setenv(TEACHER_THREAD_ENV, "1")
    assert teacher_runs_alongside(cpu) and not teacher_runs_alongside(torch.device("cuda"))
    monkeypatch.setenv(TEACHER_THREAD_ENV, "0")
    assert not teacher_runs_alongside(cpu)
    monkeypatch.delenv(TEACHER_THREAD_ENV)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores, threads = len(os.sched_getaffinity(0)), torch.get_num_threads()
    try:
        torch.set_num_threads(cores)
        assert spare_cpu_cores() == 0 and not teacher_runs_alongside(cpu)
        if cores > 1:
            torch.set_num_threads(cores - 1)
            assert spare_cpu_cores() == 1 and teacher_runs_alongside(cpu)
            monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # DDP ranks share the cores: none left over
            assert not teacher_runs_alongside(cpu)
    finally:
        torch.set_num_threads(threads)


def test_teacher_alongside_gives_the_serial_losses_and_gradients(teacher_pt, coco8_yaml, monkeypatch):
    """With the teacher in its own thread the KD step computes what the serial step does: the same losses and
    student gradients on real images, and the teacher really ran in the other thread."""
    import threading

    from ultralytics.nn.tasks import DetectionModel

    from detdistill.distill import load_teacher
    from detdistill.distill.teacher import TEACHER_THREAD_ENV

    teacher = load_teacher(teacher_pt)
    torch.manual_seed(0)
    student = DetectionModel(str(scaled_model_yaml("yolov8", width=0.0625)), nc=80, verbose=False)
    model = _kd_model(student, teacher, "default")
    threads_seen = []
    teacher.register_forward_pre_hook(lambda *_: threads_seen.append(threading.current_thread().name))
    batch = _coco8_batch(coco8_yaml, size=160)
    results = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(TEACHER_THREAD_ENV, flag)
        student.zero_grad()
        loss, items = model(dict(batch))
        loss.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None])
        results[flag] = (loss.detach(), grads)
    assert threads_seen[0] == threading.current_thread().name and threads_seen[1].startswith("detdistill-teacher")
    assert all(p.grad is None for p in teacher.parameters())
    (loss0, grads0), (loss1, grads1) = results["0"], results["1"]
    assert float(loss0[-1]) > 0  # the box KD term is live
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads1, grads0, rtol=1e-4, atol=1e-7)


def test_bf16_teacher_gives_the_fp32_kd_losses_on_real_images(teacher_pt, coco8_yaml, monkeypatch):
    """The teacher's bf16 forward (CPU speed-up) changes its soft targets too little to matter: on real coco8
    images the KD losses of a pruned-like student agree with the fp32 teacher's within 2%."""
    from detdistill.distill import load_teacher
    from detdistill.distill.teacher import TEACHER_BF16_ENV

    batch = _coco8_batch(coco8_yaml)
    teacher, student = load_teacher(teacher_pt), load_teacher(teacher_pt, fuse=False)
    torch.manual_seed(0)
    with torch.no_grad():  # a student that differs from its teacher, as a pruned one does
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p) * p.abs().mean())
    model = _kd_model(student, teacher, {"losses": [{"type": "logit"}, {"type": "box"}, {"type": "cwd"}]})
    losses = {}
    for flag, dtype in (("0", torch.float32), ("1", torch.bfloat16)):
        monkeypatch.setenv(TEACHER_BF16_ENV, flag)
        out = model._teacher_forward(batch["img"])
        assert out.scores.dtype == dtype
        _, items = model(dict(batch))
        losses[flag] = {k: float(v) for k, v in items.items() if k.startswith("kd_")}
    for name, fp32 in losses["0"].items():
        assert fp32 > 0 and abs(losses["1"][name] - fp32) <= 0.02 * fp32, (name, losses)


def test_adapters_are_fitted_on_the_first_batch(teacher_pt, coco8_yaml):
    """``adapter_init: fit`` solves each adapter by least squares on the first training batch: for a student that
    computes the teacher's features, feature KD then starts at about zero, on those images and on others, where
    random adapters start far off; the fit happens once."""
    from detdistill.distill import load_teacher

    teacher, student = load_teacher(teacher_pt), load_teacher(teacher_pt, fuse=False)
    first, other = _coco8_batch(coco8_yaml, 320), _coco8_batch(coco8_yaml, 320, first=4)
    start = {}
    for init in ("fit", "random"):
        torch.manual_seed(0)
        model = _kd_model(student, teacher, {"losses": [{"type": "pkd"}], "region": "all", "adapter_init": init})
        student.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)  # the teacher's statistics
        assert model.distiller.adapters_fitted == (init == "random")
        start[init] = [float(model(dict(batch))[1]["kd_pkd"]) for batch in (first, other)]
        assert model.distiller.adapters_fitted
    assert max(start["fit"]) < 0.02 and min(start["random"]) > 0.2, start
    adapter = model.distiller.adapters["pkd"][0][0].weight
    model.distiller.adapters_fitted = False  # fit again, then check that the next batch leaves the fit alone
    model(dict(first))
    fitted = adapter.detach().clone()
    model(dict(other))
    assert torch.equal(adapter, fitted)
