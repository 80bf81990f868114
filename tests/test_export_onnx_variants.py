"""Export variants: NMS-free heads (YOLO26, YOLOv10), NMS in the graph, preprocessing in the graph, on real images."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import onnx
import pytest
import torch

from detdistill.export.evaluate import evaluate
from detdistill.export.onnx_export import export_onnx
from detdistill.runtime import Detector
from detdistill.runtime.backends.onnxruntime import OrtBackend
from detdistill.runtime.letterbox import letterbox, preprocess
from detdistill.runtime.postprocess import decode_topk
from conftest import export_teacher, val_images

FRAME = (480, 640)  # (h, w): a 640x480 camera


def _nms_free_checkpoint(cfg: str, dst, calib: list) -> None:
    """A YOLO26 / YOLOv10 built from its YAML: seeded random convs, BatchNorm statistics measured on real images
    (so activations are well scaled and the model is numerically stable), class biases set so that a few hundred
    (anchor, class) pairs score above 0.25."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(cfg, verbose=False)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=(1.0 / m.weight[0].numel()) ** 0.5)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration pass
    x = torch.from_numpy(np.concatenate([preprocess(cv2.imread(str(f)), 320)[0] for f in calib]))
    model.train()
    with torch.no_grad():
        model(x)
    head = model.model[-1]
    for seq in list(head.one2one_cv3) + list(head.cv3):
        seq[-1].bias.data[:] = -2.0
    model.eval()
    torch.save({"model": model, "train_args": {"imgsz": 320, "task": "detect"}}, dst)


@pytest.fixture(scope="module", params=["yolo26n.yaml", "yolov10n.yaml"])
def nms_free(request, tmp_path_factory, coco_mini_yaml):
    base = tmp_path_factory.mktemp(request.param.split(".")[0])
    pt = base / "model.pt"
    _nms_free_checkpoint(request.param, pt, sorted((coco_mini_yaml.parent / "images" / "train").glob("*.jpg"))[:8])
    onnx_path = export_onnx(pt, base / "model.onnx", imgsz=320, parity_images=val_images(coco_mini_yaml, 2))
    return pt, onnx_path


def _match(a_boxes, a_scores, a_cls, b_boxes, b_scores, b_cls, box_tol: float, score_tol: float) -> None:
    """Same detections in any order: each of b has a partner in a (same class, boxes and scores within tolerance)."""
    assert len(a_scores) == len(b_scores)
    free = np.ones(len(a_scores), bool)
    for box, score, cls in zip(b_boxes, b_scores, b_cls):
        ok = free & (a_cls == cls) & (np.abs(a_boxes - box).max(1) <= box_tol) & (np.abs(a_scores - score) <= score_tol)
        assert ok.any(), (box, score, cls)
        free[np.flatnonzero(ok)[0]] = False


def test_nms_free_export_equals_the_torch_end2end_head(nms_free, coco_mini_yaml):
    pt, path = nms_free
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["postprocess"] == "none" and "one-to-one" in meta["outputs"]
    from detdistill.models import load_detection_checkpoint

    model = load_detection_checkpoint(pt)[0].eval()
    model.end2end = True  # ultralytics' own NMS-free inference: one-to-one branch, top-300 (box, score, class)
    ort = OrtBackend(path, device="cpu")
    checked = 0
    for f in val_images(coco_mini_yaml, 3):
        x, _ = preprocess(cv2.imread(str(f)), 320)
        with torch.no_grad():
            ref = model(torch.from_numpy(x))
        ref = (ref[0] if isinstance(ref, (list, tuple)) else ref)[0].numpy()  # (300, 6) xyxy, score, class
        ref = ref[ref[:, 4] > 0.25]
        boxes, scores = ort.infer(x)
        xyxy, score, cls = decode_topk(boxes[0], scores[0], conf=0.25, max_det=300)
        # tolerance: fp32 graph vs PyTorch, 1e-3 px and 1e-4 in score
        _match(xyxy, score, cls, ref[:, :4], ref[:, 4], ref[:, 5].astype(np.int64), 1e-3, 1e-4)
        checked += len(ref)
    assert checked > 50


def test_nms_free_detector_reproduces_ultralytics_predict(nms_free, coco_mini_yaml):
    from ultralytics import YOLO

    pt, path = nms_free
    det = Detector(path, conf=0.3, letterbox="predict")
    assert det.postprocess_mode == "none"
    yolo = YOLO(str(pt))
    checked = 0
    for f in val_images(coco_mini_yaml, 4):
        frame = cv2.imread(str(f))
        ref = yolo.predict(frame, imgsz=320, conf=0.3, nms=False, rect=False, verbose=False)[0].boxes
        res = det(frame)
        rb, rs, rc = ref.xyxy.numpy(), ref.conf.numpy(), ref.cls.numpy().astype(np.int64)
        b, s, c = res.boxes, res.scores, res.class_ids
        if len(s) == 300:  # the top-k cut: near-ties there may fall either way, compare what lies clearly above it
            cut = max(s.min(), rs.min()) + 1e-4
            b, s, c, rb, rs, rc = b[s > cut], s[s > cut], c[s > cut], rb[rs > cut], rs[rs > cut], rc[rs > cut]
        # tolerance: 0.01 px of the original frame, 1e-4 in score (fp32 ONNX Runtime vs PyTorch)
        _match(b, s, c, rb, rs, rc, 0.01, 1e-4)
        checked += len(s)
    assert checked > 20


def test_nms_free_eval_runs_through_detdistill_eval(nms_free, coco_mini_yaml):
    from typer.testing import CliRunner

    from detdistill.cli import app

    _, path = nms_free
    r = CliRunner().invoke(app, ["eval", str(path), "--data", str(coco_mini_yaml), "--limit", "3"])
    assert r.exit_code == 0, r.output
    assert "mAP50-95" in r.output and "3 images" in r.output
    with pytest.raises(ValueError, match="NMS-free.*drop --nms"):  # --one2many: below
        export_onnx(path.with_name("model.pt"), path.with_name("x.onnx"), imgsz=320, nms=True)


def test_the_one_to_many_branch_exports_with_nms_as_ultralytics_predicts_by_default(nms_free, coco_mini_yaml, tmp_path):
    """`export --one2many`: the branch ultralytics' validation and predict() score by default (nms=None: one-to-many
    and NMS) is exported for host NMS or with --nms, and the runtime reproduces that predict()."""
    from typer.testing import CliRunner
    from ultralytics import YOLO

    from detdistill.cli import app

    pt, _ = nms_free
    out = CliRunner().invoke(app, ["export", str(pt), "-o", str(tmp_path / "o2m.onnx"), "--imgsz", "320",
                                   "--one2many"])
    assert out.exit_code == 0, out.output
    det = Detector(tmp_path / "o2m.onnx", conf=0.3, letterbox="predict")
    assert det.postprocess_mode == "host_nms"
    yolo, checked = YOLO(str(pt)), 0
    for f in val_images(coco_mini_yaml, 3):
        frame = cv2.imread(str(f))
        ref = yolo.predict(frame, imgsz=320, conf=0.3, rect=False, verbose=False)[0].boxes  # ultralytics' default
        res = det(frame)
        _match(res.boxes, res.scores, res.class_ids, ref.xyxy.numpy(), ref.conf.numpy(),
               ref.cls.numpy().astype(np.int64), 0.01, 1e-4)
        checked += len(res.scores)
    assert checked > 5
    nms = export_onnx(pt, tmp_path / "o2m-nms.onnx", imgsz=320, nms=True, one2one=False)
    assert Detector(nms).postprocess_mode == "graph_nms"
    with pytest.raises(ValueError, match=r"drop --nms .* or add --one2many"):
        export_onnx(pt, tmp_path / "x.onnx", imgsz=320, nms=True)


def test_nms_free_checkpoint_evaluates_in_pytorch_as_its_onnx(nms_free, coco_mini_yaml):
    """A YOLO26/YOLOv10 ``.pt`` evaluates through the one-to-one branch with top-k, as its export does."""
    from detdistill.export.evaluate import open_detector

    pt, path = nms_free
    torch_det, onnx_det = open_detector(pt, imgsz=320), open_detector(path)
    assert torch_det.postprocess_mode == onnx_det.postprocess_mode == "none"
    for f in val_images(coco_mini_yaml, 2):
        frame = cv2.imread(str(f))
        a, b = torch_det(frame), onnx_det(frame)
        keep_a, keep_b = a.scores > 0.3, b.scores > 0.3  # clear of the top-k cut's near-ties
        _match(a.boxes[keep_a], a.scores[keep_a], a.class_ids[keep_a], b.boxes[keep_b], b.scores[keep_b],
               b.class_ids[keep_b], 0.01, 1e-4)


@pytest.fixture(scope="module")
def teacher_variants(tmp_path_factory, teacher_pt):
    host = export_teacher(tmp_path_factory, teacher_pt)
    pt = host.with_name("teacher.pt")
    graph = export_onnx(pt, host.with_name("teacher320-nms.onnx"), imgsz=320, nms=True)
    frame = export_onnx(pt, host.with_name("teacher320-frame.onnx"), imgsz=320, frame=FRAME)
    return host, graph, frame


def test_graph_nms_outputs_and_metadata(teacher_variants, coco_mini_yaml):
    host, graph, _ = teacher_variants
    proto = onnx.load(str(graph))
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert outs == {"num_dets": [1, 1], "det_boxes": [1, 300, 4], "det_scores": [1, 300], "det_classes": [1, 300]}
    assert "NonMaxSuppression" in {n.op_type for n in proto.graph.node}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["postprocess"] == "graph_nms"
    nms = json.loads(meta["nms"])
    assert (nms["conf"], nms["iou"], nms["max_det"], nms["class_aware"]) == (0.001, 0.7, 300, True)
    a, b = Detector(host, conf=0.25), Detector(graph, conf=0.25)
    for f in val_images(coco_mini_yaml, 6):  # the demo's setting: same boxes as host NMS (single image checks)
        img = cv2.imread(str(f))
        ra, rb = a(img), b(img)
        # tolerance: the graph keeps every class above conf (multi-label); host predict keeps each anchor's best.
        # Compare the best-class detections: all of host's are in the graph's output
        for box, score, cls in zip(ra.boxes, ra.scores, ra.class_ids):
            ok = (rb.class_ids == cls) & (np.abs(rb.boxes - box).max(1) < 1e-3) & (np.abs(rb.scores - score) < 1e-5)
            assert ok.any()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Detector(graph, iou=0.5)
    assert any("IoU 0.7" in str(w.message) for w in caught)


def test_graph_nms_map_equals_host_nms(teacher_variants, coco_mini_yaml):
    host, graph, _ = teacher_variants
    a = evaluate(host, coco_mini_yaml, limit=40)
    b = evaluate(graph, coco_mini_yaml, limit=40)
    assert a.map50_95 > 0.2
    assert abs(a.map50_95 - b.map50_95) < 1e-3 and abs(a.map50 - b.map50) < 1e-3  # required: 0.1 point


def _frames_dataset(src_yaml, dst, n: int):
    """The first ``n`` val images as 640x480 camera frames (host letterbox, PNG), labels moved with them."""
    (dst / "images" / "val").mkdir(parents=True)
    (dst / "labels" / "val").mkdir(parents=True)
    for f in val_images(src_yaml, n):
        img = cv2.imread(str(f))
        out, info = letterbox(img, FRAME)
        cv2.imwrite(str(dst / "images" / "val" / (f.stem + ".png")), out)
        lab = src_yaml.parent / "labels" / "val" / (f.stem + ".txt")
        rows = np.loadtxt(lab, ndmin=2) if lab.is_file() and lab.stat().st_size else np.zeros((0, 5))
        h0, w0 = img.shape[:2]
        (gy, gx), (px, py) = info.gain, info.pad
        rows[:, 1] = (rows[:, 1] * w0 * gx + px) / FRAME[1]
        rows[:, 3] = rows[:, 3] * w0 * gx / FRAME[1]
        rows[:, 2] = (rows[:, 2] * h0 * gy + py) / FRAME[0]
        rows[:, 4] = rows[:, 4] * h0 * gy / FRAME[0]
        np.savetxt(dst / "labels" / "val" / (f.stem + ".txt"), rows, fmt="%d %.6f %.6f %.6f %.6f")
    import yaml

    cfg = yaml.safe_load(src_yaml.read_text())
    cfg.update(path=str(dst), train="images/val", val="images/val")
    cfg.pop("test", None)
    (dst / "data.yaml").write_text(yaml.safe_dump(cfg))
    return dst / "data.yaml"


def test_frame_input_matches_host_preprocessing(teacher_variants, coco_mini_yaml, tmp_path):
    host, _, frame = teacher_variants
    proto = onnx.load(str(frame))
    inp = proto.graph.input[0]
    assert inp.name == "frames" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 480, 640, 3]
    pre = json.loads({p.key: p.value for p in proto.metadata_props}["preprocess"])
    assert pre["in_graph"] and pre["frame"] == [480, 640]
    a, b = Detector(host, conf=0.25), Detector(frame, conf=0.25)
    checked = 0
    for f in val_images(coco_mini_yaml, 8):
        img = cv2.resize(cv2.imread(str(f)), (640, 480))  # a real photo at the camera's size
        ra, rb = a(img), b(img)
        # tolerance: the graph's bilinear resize rounds half up like OpenCV: measured identical at 2x; allow 1e-3
        _match(rb.boxes, rb.scores, rb.class_ids, ra.boxes, ra.scores, ra.class_ids, 1e-3, 1e-4)
        checked += len(ra)
    assert checked > 15
    with pytest.raises(ValueError, match=r"takes 640x480 frames.*1280x720.*--frame 1280x720"):
        b(np.zeros((720, 1280, 3), np.uint8))
    data = _frames_dataset(coco_mini_yaml, tmp_path / "frames", 40)
    ea = evaluate(host, data)
    eb = evaluate(Detector(frame, conf=0.001, iou=0.7, max_det=300, multi_label=True), data)
    assert ea.images == eb.images == 40 and ea.map50_95 > 0.2
    assert abs(ea.map50_95 - eb.map50_95) < 1e-3 and abs(ea.map50 - eb.map50) < 1e-3  # required: 0.1 point
    fit = Detector(frame, conf=0.001, iou=0.7, max_det=300, multi_label=True, fit_frames=True)
    assert evaluate(fit, coco_mini_yaml, limit=4).images == 4  # any image size, fitted to 640x480 on the host


def test_eval_of_a_frame_model_says_that_images_are_fitted_to_its_frame(teacher_variants, coco_mini_yaml):
    from typer.testing import CliRunner

    from detdistill.cli import app

    host, _, frame = teacher_variants
    notes = {}
    for model in (host, frame):
        out = CliRunner().invoke(app, ["eval", str(model), "--data", str(coco_mini_yaml), "--limit", "2"],
                                 terminal_width=300)
        assert out.exit_code == 0, out.output
        notes[model] = [line for line in out.output.splitlines() if line.startswith("note:")]
    assert notes[host] == []
    assert len(notes[frame]) == 1 and "takes 640x480 camera frames" in notes[frame][0]


def test_quantize_keeps_graph_nms_in_float_and_refuses_frames(teacher_variants, coco_mini_yaml, tmp_path):
    from detdistill.export.quantize import quantize_onnx

    host, graph, frame = teacher_variants
    res = quantize_onnx(graph, coco_mini_yaml, tmp_path / "nms.int8.onnx", num_images=8)
    proto = onnx.load(str(res.path))
    assert {o.name for o in proto.graph.output} == {"num_dets", "det_boxes", "det_scores", "det_classes"}
    q = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert q and not any("/nms/" in n.name or any("/nms/" in i for i in n.input) for n in q)
    ref = quantize_onnx(host, coco_mini_yaml, tmp_path / "host.int8.onnx", num_images=8)
    a, b = evaluate(ref.path, coco_mini_yaml, limit=20), evaluate(res.path, coco_mini_yaml, limit=20)
    assert abs(a.map50_95 - b.map50_95) < 1e-3
    with pytest.raises(ValueError, match="uint8 camera frames.*without --frame"):
        quantize_onnx(frame, coco_mini_yaml, tmp_path / "f.onnx", num_images=8)


def test_demo_runs_a_frame_model_and_opens_the_clip_at_its_size(teacher_variants, tmp_path):
    from detdistill.demo.app import run_demo
    from detdistill.demo.sources import at_frame_size

    _, graph, frame = teacher_variants
    seen: list[tuple] = []
    for model in (frame, graph):  # preprocessing in the graph; NMS in the graph (pipelined stages)
        summary = run_demo(str(model), "synthetic?frames=8&fps=30", show=False, max_frames=3, log=lambda m: None,
                           on_frame=lambda i, img, dets: seen.append((img.shape, len(dets))))
        assert summary.frames >= 2  # a live clip: frames that arrive while the model is busy are dropped
    assert {s for s, _ in seen} == {(480, 640, 3)}
    spec = at_frame_size("0", (720, 1280))
    assert (spec.width, spec.height) == (1280, 720)
    assert at_frame_size("0?width=640&height=480", (720, 1280)) == "0?width=640&height=480"  # asked: kept
    assert at_frame_size(str(tmp_path), (720, 1280)) == str(tmp_path)  # an image folder is not resized


def test_several_cameras_batch_through_one_dynamic_model_with_both_in_graph(teacher_variants, coco_mini_yaml):
    """``--dynamic --nms --frame``: frames of several cameras in one engine call give each frame's own detections."""
    from detdistill.demo.stages import RuntimeStages

    host = teacher_variants[0]
    both = export_onnx(host.with_name("teacher.pt"), host.with_name("teacher320-both-dyn.onnx"), imgsz=320,
                       nms=True, frame=FRAME, dynamic=True)
    det = Detector(str(both))
    assert det.backend.input_shape == (-1, *FRAME, 3)
    frames = [cv2.resize(cv2.imread(str(f)), FRAME[::-1]) for f in val_images(coco_mini_yaml, 3)]
    stages = RuntimeStages(det, max_batch=3)
    batch, infos, _ = stages.prepare(frames)
    outputs, _ = stages.infer(batch)
    batched, _ = stages.finish(outputs, infos)
    alone = [det(f) for f in frames]
    assert batch.shape == (3, *FRAME, 3) and sum(len(d.scores) for d in alone) > 3
    for b, a in zip(batched, alone):
        assert np.array_equal(b.class_ids, a.class_ids) and np.allclose(b.boxes, a.boxes, atol=1e-3)


def test_bench_times_a_frame_model_on_frames_of_its_size(teacher_variants, coco_mini_yaml):
    """bench feeds a --frame model camera-sized frames (no host letterbox): a strict Detector takes them as they are."""
    from detdistill.export.bench import bench

    _, _, frame = teacher_variants
    det = Detector(frame, conf=0.25)  # fit_frames off: a frame of another size would be refused
    with pytest.raises(ValueError, match="letterboxes in its graph"):
        Detector(frame, letterbox="predict")  # the graph's geometry is fixed
    with pytest.raises(ValueError, match="640x480"):
        det(cv2.imread(str(val_images(coco_mini_yaml, 1)[0])))
    for images in (None, coco_mini_yaml.parent / "images" / "val"):
        assert bench(det, images, runs=50, warmup=1).fps > 0


def test_export_cli_rejects_a_bad_frame_size(teacher_pt, tmp_path):
    from typer.testing import CliRunner

    from detdistill.cli import app

    pt = tmp_path / "t.pt"
    pt.write_bytes(teacher_pt.read_bytes())
    r = CliRunner().invoke(app, ["export", str(pt), "--frame", "640by480"])
    assert r.exit_code != 0 and "WIDTHxHEIGHT like 1280x720" in r.output
