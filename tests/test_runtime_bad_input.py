"""Bad input to the torch-free runtime ends in one clear error naming the problem and the fix, on the real teacher."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from detdistill.runtime import Detector, letterbox
from detdistill.runtime.backends.onnxruntime import OrtBackend
from detdistill.runtime.model_file import UnreadableModelError
from detdistill.runtime.postprocess import nms, split_head, xywh2xyxy
from conftest import export_teacher, val_images


@pytest.fixture(scope="module")
def models(tmp_path_factory, teacher_pt) -> dict:
    """The COCO teacher at 320: host decode + NMS, NMS in the graph, letterbox in the graph, a dynamic batch."""
    return {
        "host": export_teacher(tmp_path_factory, teacher_pt),
        "nms": export_teacher(tmp_path_factory, teacher_pt, "teacher320-nms.onnx", nms=True),
        "frame": export_teacher(tmp_path_factory, teacher_pt, "teacher320-frame.onnx", frame=(480, 640)),
        "dyn": export_teacher(tmp_path_factory, teacher_pt, "teacher320-dyn.onnx", dynamic=True, simplify=False),
    }


@pytest.fixture(scope="module")
def image(coco_mini_yaml) -> np.ndarray:
    return cv2.imread(str(val_images(coco_mini_yaml, 1)[0]))


@pytest.mark.parametrize("kind", ["host", "nms"])
def test_max_det_below_one_is_refused(models, image, kind):
    for bad in (0, -1):  # decode + NMS on the host kept 1 box for both, the graph's NMS 0
        need = r"^max_det is the most boxes per frame, an integer of at least 1 \(e.g. 300\), got "
        with pytest.raises(ValueError, match=f"{need}{bad}$"):
            Detector(models[kind], max_det=bad)
    with pytest.raises(TypeError, match=r"max_det .* at least 1 .*got '5' \(a str\)"):
        Detector(models[kind], max_det="5")
    assert len(Detector(models[kind], max_det=1)(image)) == 1


def test_nms_keeps_at_most_max_keep(models, image):
    det = Detector(models["host"])
    boxes, scores = split_head(det.backend.infer(det.preprocess(image)[0]))
    xyxy, best = xywh2xyxy(boxes[0].T), scores[0].max(0)
    assert [len(nms(xyxy, best, 0.7, k)) for k in (0, 1, 3)] == [0, 1, 3]  # 0 kept 1 box


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 10, 3), (10, 0, 3)])
def test_an_empty_image_is_refused(models, shape):
    empty = np.zeros(shape, np.uint8)
    message = re.escape(f"expected a uint8 HxWx3 BGR image, got an empty one of shape {shape}; pass an image with")
    for det in (Detector(models["host"]), Detector(models["frame"], fit_frames=True), Detector(models["frame"])):
        with pytest.raises(ValueError, match=message):
            det(empty)
    with pytest.raises(ValueError, match=message):
        letterbox(empty, 320)


@pytest.mark.parametrize(("img", "fix"), [
    (np.zeros((8, 8), np.uint8), "cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)"),  # cv2.IMREAD_GRAYSCALE
    (np.zeros((8, 8, 4), np.uint8), "cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)"),  # a PNG read with IMREAD_UNCHANGED
    (np.zeros((8, 8, 3), np.uint16), "(img >> 8).astype(np.uint8) for 16-bit pixels"),
    (np.full((8, 8, 3), 0.5, np.float32), "np.clip(img * 255, 0, 255).astype(np.uint8) for floats in [0, 1]"),
    (np.full((8, 8, 3), 200.0, np.float32), "np.clip(img, 0, 255).astype(np.uint8) for floats in 0-255"),
    (np.full((8, 8, 3), 200, np.int64), "np.clip(img, 0, 255).astype(np.uint8) for pixel values 0-255"),
    (np.zeros((8, 8, 3), bool), "img.astype(np.uint8) * 255 for a mask"),
    (np.zeros((3, 8, 8), np.uint8), "img.transpose(1, 2, 0) for a CxHxW array"),
    ([np.zeros((8, 8, 3), np.uint8)], "call the detector once per image")])
def test_an_image_of_another_kind_is_refused_naming_its_conversion(img, fix):
    with pytest.raises(ValueError, match=re.escape(fix)):
        letterbox(img, 320)


@pytest.mark.parametrize("kind", ["host", "dyn"])  # dyn: a dynamic batch axis, a fixed size
def test_imgsz_override_on_a_fixed_size_model_is_refused(models, image, kind):
    det = Detector(models[kind])
    with pytest.raises(ValueError, match=r"input 640x640 \(HxW\): this model takes a fixed 320x320 input; leave "
                                         r"Detector.detect's imgsz out, or export the model again at that size"):
        det.detect(image, imgsz=(640, 640))
    assert len(det.detect(image, imgsz=(320, 320))) == len(det(image)) > 0  # its own size still works


def test_imgsz_override_on_a_frame_model_is_refused(models, image):
    det = Detector(models["frame"], fit_frames=True)
    with pytest.raises(ValueError, match=r"imgsz \(640, 640\): this model takes 640x480 camera frames and letterboxes "
                                         r"them to \(320, 320\) in its graph; leave imgsz out"):
        det.detect(image, imgsz=(640, 640))  # was ignored without a word
    assert len(det.detect(image, imgsz=(320, 320))) == len(det(image)) > 0


def test_a_second_image_on_a_fixed_batch_is_refused(models):
    x = np.zeros((2, 3, 320, 320), np.float32)
    with pytest.raises(ValueError, match=r"a batch of 2: this model takes a fixed batch of 1; .*--dynamic"):
        OrtBackend(models["host"]).infer(x)
    assert [o.shape[0] for o in OrtBackend(models["dyn"]).infer(x)] == [2, 2]


@pytest.mark.parametrize("content", ["truncated", "text"])
def test_an_unreadable_onnx_is_named_with_the_fix(models, tmp_path, content):
    path = tmp_path / "t.onnx"
    if content == "truncated":
        path.write_bytes(models["host"].read_bytes()[:100_000])  # a copy or export that stopped midway
    else:
        path.write_text("not a model\n")
    with pytest.raises(UnreadableModelError) as e:
        Detector(path)
    assert str(e.value).startswith(f"{path} is not a readable ONNX model (")
    assert str(e.value).endswith("); export it again with `detdistill export`")
    assert "InvalidProtobuf" in type(e.value.__cause__).__name__  # ONNX Runtime's error, kept as the cause


def test_a_checkpoint_or_a_folder_given_as_the_model_names_the_export(models, tmp_path, teacher_pt):
    renamed = tmp_path / "teacher.onnx"  # a .pt copied under an ONNX name
    renamed.write_bytes(teacher_pt.read_bytes())
    for path, backend in ((teacher_pt, "onnxruntime"), (renamed, "auto")):
        name = re.escape(str(path))
        with pytest.raises(ValueError, match=rf"{name} is a PyTorch checkpoint, not an exported ONNX model: export it "
                                             rf"with `detdistill export {name}`"):
            Detector(path, backend=backend)
    with pytest.raises(ValueError, match=r"is a PyTorch checkpoint: the runtime opens .onnx and .engine files; export"):
        Detector(teacher_pt)
    with pytest.raises(FileNotFoundError, match=rf"ONNX model {re.escape(str(tmp_path))} is a folder, not a file\. "
                                                r"Export one with `detdistill export`\."):
        Detector(tmp_path, backend="onnxruntime")
    with pytest.raises(ValueError, match=rf"model {re.escape(str(tmp_path))} is a folder, not a file\. Pass the "
                                         r"\.onnx or \.engine in it\."):
        Detector(tmp_path)  # the backend picked by suffix: a folder has none


def test_bad_options_are_named(models, image):
    with pytest.raises(TypeError, match=r"conf must be a number in \[0, 1\], e.g. conf=0.5, got '0.5' \(a str\)"):
        Detector(models["host"], conf="0.5")
    with pytest.raises(TypeError, match=r"iou must be a number"):
        Detector(models["host"], iou=None)
    for threads in ("2", 1.5):
        with pytest.raises(TypeError, match=rf"threads must be a whole number of CPU threads .*got {threads!r}"):
            Detector(models["host"], threads=threads)
    with pytest.raises(ValueError, match="threads must be 0 or more"):
        Detector(models["host"], threads=-1)
    assert len(Detector(models["host"], threads=np.int64(1))(image)) > 0

    one = Detector(models["host"], classes=0)(image)  # a single class id is taken as [0]
    assert len(one) > 0 and set(one.class_ids.tolist()) == {0}
    assert np.array_equal(one.boxes, Detector(models["host"], classes=[0])(image).boxes)

    with pytest.raises(TypeError, match=r"classes \['person', 2\]: class ids are integers here; in this model "
                                        r"'person' is 0: pass classes=\[0, 2\]"):
        Detector(models["host"], classes=["person", 2])
    with pytest.raises(TypeError, match=r"classes \['persn'\]: class ids are integers here, 0\.\.79 in this model"):
        Detector(models["host"], classes=["persn"])
    with pytest.raises(ValueError, match=r"classes \[80\] not all in the model's class ids 0\.\.79"):
        Detector(models["host"], classes=80)

    with pytest.raises(TypeError, match=r"^Detector got an unexpected keyword argument 'confidence': its options are "
                                        r"conf, iou, classes, backend, max_det, multi_label, letterbox, fit_frames, "
                                        r"and for the onnxruntime backend device, threads, int8_kernels$"):
        Detector(models["host"], confidence=0.5)
    backend = OrtBackend(models["host"])
    with pytest.raises(TypeError, match=r"'device': .*backend options apply only when Detector opens the model"):
        Detector(backend, device="cpu")


def test_an_onnx_that_is_not_a_detector_is_refused_at_load(models, tmp_path):
    """A classifier or an image-to-image ONNX is named as not a detector when it is opened, before a source or a
    recording is; every detector layout the runtime reads (host NMS, NMS in the graph, a dynamic batch) opens."""
    import onnx
    from onnx import TensorProto, helper

    def model(path: Path, out_shape: list) -> Path:
        x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
        node = (helper.make_node("Identity", ["images"], ["y"]) if len(out_shape) == 4 else
                helper.make_node("ReduceMean", ["images"], ["y"], axes=[2, 3], keepdims=0))
        graph = helper.make_graph([node], "not-a-detector", [x], [y])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return path

    for path, shape in ((model(tmp_path / "identity.onnx", [1, 3, 64, 64]), r"\(1, 3, 64, 64\)"),
                        (model(tmp_path / "classifier.onnx", [1, 3]), r"\(1, 3\)")):
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a YOLO detection model: its outputs "
                                             rf"are {shape}, where a YOLO detector gives .*; export a detection model"):
            Detector(path)
    for kind in ("host", "nms", "frame", "dyn"):
        assert Detector(models[kind]).names[0] == "person"


def test_a_model_ending_in_detection_rows_is_decoded_as_rows(tmp_path):
    """ultralytics' export with nms=True ends in (B, K, 6) rows: x1, y1, x2, y2, score, class. They were read as a
    raw head (4 + classes, anchors) and scored 0; they are kept as they are, above conf and of the classes asked."""
    import warnings

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows = np.array([[[10, 12, 30, 40, 0.9, 2], [5, 5, 20, 20, 0.5, 0], [1, 1, 2, 2, 0.1, 0], [0, 0, 0, 0, 0, 0]]],
                    np.float32)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4, 6])
    nodes = [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=1),  # (1, 1, 1, 1): uses the input
             helper.make_node("Reshape", ["total", "shape"], ["total3"]),
             helper.make_node("Mul", ["total3", "zero"], ["nothing"]),
             helper.make_node("Add", ["rows", "nothing"], ["output0"])]
    inits = [numpy_helper.from_array(rows, "rows"), numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
             numpy_helper.from_array(np.array([1, 1, 1], np.int64), "shape")]
    graph = helper.make_graph(nodes, "rows", [x], [y], inits)
    path = tmp_path / "rows.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    image = np.full((64, 64, 3), 114, np.uint8)
    res = Detector(path, conf=0.25)(image)
    assert res.class_ids.tolist() == [2, 0] and np.allclose(res.scores, [0.9, 0.5])
    assert np.allclose(res.boxes, [[10, 12, 30, 40], [5, 5, 20, 20]])
    assert Detector(path, conf=0.25, classes=[0])(image).class_ids.tolist() == [0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(Detector(path, conf=0.001)(image)) == 3  # all rows above 0.001; scored below its export conf:
    assert any("detection rows its graph chose" in str(w.message) for w in caught)  # said


def test_a_model_whose_metadata_was_stripped(models, image, tmp_path):
    """A tool that rewrites the graph can drop the metadata: NMS in the graph is still read from its four outputs
    (it was refused as 'expected 1 or 2 head outputs'), and a --frame model is named with the fix (it crashed)."""
    import onnx

    def stripped(kind: str) -> Path:
        proto = onnx.load(str(models[kind]))
        del proto.metadata_props[:]
        onnx.save(proto, str(tmp_path / f"{kind}-nometa.onnx"))
        return tmp_path / f"{kind}-nometa.onnx"

    with_meta = Detector(models["nms"])(image)
    without = Detector(stripped("nms"))(image)
    assert len(without) == len(with_meta) > 0 and np.allclose(without.boxes, with_meta.boxes)
    with pytest.raises(ValueError, match=r"takes uint8 frames .* its metadata, which gives the frame size and "
                                         r"letterbox, is missing .*: export it again with `detdistill export --frame`"):
        Detector(stripped("frame"))


def test_a_fixed_batch_model_runs_one_image_as_a_padded_batch(tmp_path_factory, teacher_pt, models, image):
    """`export --batch 2` made a model nothing could run one frame at a time (eval, bench, demo); it now runs an
    image alone as a batch of copies, with the same detections as the batch-1 model, and says what it costs."""
    import warnings

    b2 = export_teacher(tmp_path_factory, teacher_pt, "teacher320-b2.onnx", batch=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det = Detector(b2)
    assert any("takes a fixed batch of 2: an image alone runs as a batch of 2 copies" in str(w.message) for w in caught)
    one, two = Detector(models["host"])(image), det(image)
    assert len(one) == len(two) > 0 and np.allclose(one.boxes, two.boxes, atol=1e-3)
