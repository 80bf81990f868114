"""ONNX export of the real teacher: outputs, metadata, parity with PyTorch on real images, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from detdistill.export.onnx_export import ParityError, check_parity, export_onnx
from detdistill.runtime.backends.onnxruntime import OrtBackend
from detdistill.runtime.letterbox import preprocess
from conftest import export_teacher, val_images


def test_export_static_outputs_and_metadata(tmp_path_factory, teacher_pt):
    path = export_teacher(tmp_path_factory, teacher_pt)
    proto = onnx.load(str(path))
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert outs == {"boxes": [1, 4, 2100], "scores": [1, 80, 2100]}  # separate tensors: no shared INT8 scale
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["imgsz"]) == [320, 320] and meta["stride"] == "32"
    assert json.loads(meta["names"])["0"] == "person"
    assert json.loads(meta["preprocess"])["letterbox"] == "val"
    assert meta["head"].endswith("/model.22/")
    assert len(meta["source_sha256"]) == 64


def test_parity_with_pytorch_on_real_images(tmp_path_factory, teacher_pt, coco_mini_yaml):
    path = export_teacher(tmp_path_factory, teacher_pt)
    report = check_parity(path.with_name("teacher.pt"), path, val_images(coco_mini_yaml, 4))
    assert report.max_box_diff < 0.05 and report.max_score_diff < 1e-3


def test_the_dfl_runs_its_softmax_on_the_last_axis_and_keeps_ultralytics_numbers(tmp_path_factory, teacher_pt,
                                                                                 coco_mini_yaml):
    """The export's DFL (last-axis softmax, product with the bins) gives the boxes of ultralytics' own DFL."""
    import torch
    from ultralytics import YOLO

    from detdistill.export.wrapper import ExportWrapper

    model = YOLO(str(teacher_pt)).model
    wrapper, _ = ExportWrapper.build(model, dynamic_shape=False)
    reference = model.fuse().eval()
    x = torch.from_numpy(preprocess(__import__("cv2").imread(str(val_images(coco_mini_yaml, 1)[0])), 320)[0])
    with torch.no_grad():
        boxes, _ = wrapper(x)
        expected = reference(x)[0][:, :4]  # ultralytics' inference output: xywh boxes, then class scores
    assert boxes.shape == expected.shape and (boxes - expected).abs().max() < 1e-3
    proto = onnx.load(str(export_teacher(tmp_path_factory, teacher_pt)))
    softmax = [n for n in proto.graph.node if n.op_type == "Softmax"]
    assert len(softmax) == 1 and "dfl" in softmax[0].name
    assert [a.i for a in softmax[0].attribute if a.name == "axis"] == [-1]


def test_parity_fails_loudly_on_a_broken_export(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    path = export_teacher(tmp_path_factory, teacher_pt)
    proto = onnx.load(str(path))
    init = next(i for i in proto.graph.initializer if len(i.dims) == 4 and "model.22" not in i.name)
    arr = onnx.numpy_helper.to_array(init) * 1.5
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(ParityError, match="does not match PyTorch"):
        check_parity(path.with_name("teacher.pt"), broken, val_images(coco_mini_yaml, 1))


def test_dynamic_batch_export(tmp_path_factory, teacher_pt, coco_mini_yaml):
    path = export_teacher(tmp_path_factory, teacher_pt, "teacher320-dyn.onnx", dynamic=True, simplify=False)
    be = OrtBackend(path, device="cpu")
    assert be.input_shape[0] == -1 and be.info.imgsz == (320, 320)
    xs = [preprocess(__import__("cv2").imread(str(f)), 320)[0] for f in val_images(coco_mini_yaml, 2)]
    boxes, scores = be.infer(np.concatenate(xs))
    assert boxes.shape == (2, 4, 2100) and scores.shape == (2, 80, 2100)
    single = be.infer(xs[1])[1]
    assert np.abs(single[0] - scores[1]).max() < 1e-4


def test_export_rejects_bad_input(tmp_path, teacher_pt):
    pt = tmp_path / "t.pt"
    shutil.copy(teacher_pt, pt)
    with pytest.raises(ValueError, match="multiples of the model stride"):
        export_onnx(pt, tmp_path / "x.onnx", imgsz=300)
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        export_onnx(tmp_path / "missing.pt")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .pt"):
        export_onnx(tmp_path / "model.onnx")


def test_a_parity_check_that_compared_nothing_says_so_rather_than_diff_zero():
    from detdistill.export.onnx_export import ParityReport

    nothing = ParityReport(4, 0.0, 0.0, "fake-quantized model: mean on confident anchors, reported only", compared=0)
    assert "nothing compared, no anchor scored above 0.25" in str(nothing) and "diff 0" not in str(nothing)
    some = ParityReport(4, 0.5, 0.01, "fake-quantized model: mean on confident anchors, reported only", compared=3)
    assert "|boxes| diff 0.5 px, |scores| diff 0.01" in str(some)
