"""Bad input to the torch-free runtime ends in one clear error naming the problem and the fix, on the real teacher."""

from __future__ import annotations

import re

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
    with pytest.raises(FileNotFoundError, match=rf"ONNX model {re.escape(str(tmp_path))} is a folder, not a model "
                                                r"file: pass the file in it"):
        Detector(tmp_path, backend="onnxruntime")


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
