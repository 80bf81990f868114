"""TensorRT backend through an injected fake ``tensorrt`` module and CUDA helper (no GPU here).

The fake engine implements the name-based API the backend must use and echoes a fixed head output, so the
test checks I/O discovery, shape binding, address setting, execute_async_v3 and the copies.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from detdistill.runtime import Detector
from detdistill.runtime.backends.tensorrt import TrtBackend, sidecar_path


class FakeCuda:
    def __init__(self):
        self.mem: dict[int, np.ndarray] = {}
        self.stream_handle = 7

    def malloc(self, nbytes):
        ptr = 1000 + len(self.mem) * 10_000_000
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def htod(self, ptr, host):
        self.mem[ptr][:host.nbytes] = host.view(np.uint8).ravel()

    def dtoh(self, host, ptr):
        host.view(np.uint8).ravel()[:] = self.mem[ptr][:host.nbytes]

    def synchronize(self):
        pass

    def pinned(self, shape, dtype):
        return np.empty(shape, dtype)


def make_fake_trt(version="10.3.0", boxes=None, scores=None, deserialize_ok=True):
    calls = []
    trt = types.SimpleNamespace(__version__=version, calls=calls)
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dt: dt
    shapes = {"images": (-1, 3, 320, 320), "boxes": (-1, 4, 3), "scores": (-1, 2, 3)}

    class Context:
        def __init__(self, cuda_ref):
            self.addr, self.bs = {}, 1

        def set_input_shape(self, name, shape):
            calls.append(("set_input_shape", name, tuple(shape)))
            self.bs = shape[0]

        def get_tensor_shape(self, name):
            return (self.bs, *shapes[name][1:])

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            calls.append(("execute_async_v3", stream))
            cuda = trt.cuda
            cuda.mem[self.addr["boxes"]][:] = np.ascontiguousarray(boxes, np.float32).view(np.uint8).ravel()
            cuda.mem[self.addr["scores"]][:] = np.ascontiguousarray(scores, np.float32).view(np.uint8).ravel()
            return True

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i):
            return ["images", "boxes", "scores"][i]

        def get_tensor_mode(self, name):
            return "in" if name == "images" else "out"

        def get_tensor_shape(self, name):
            return shapes[name]

        def get_tensor_dtype(self, name):
            return np.float32

        def create_execution_context(self):
            return Context(None)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if deserialize_ok else None

    trt.Runtime = Runtime
    return trt


def _engine(tmp_path, version="10.3.0"):
    path = tmp_path / "m.engine"
    path.write_bytes(b"serialized-engine")
    sidecar_path(path).write_text(json.dumps({"tensorrt": version, "gpu": "Orin", "imgsz": [320, 320],
                                              "names": {"0": "person", "1": "car"}}))
    return path


def test_detector_runs_a_fake_engine_end_to_end(tmp_path):
    boxes = np.array([[[100, 200, 100], [100, 200, 100], [40, 40, 41], [40, 40, 41]]], np.float32)
    scores = np.array([[[0.9, 0.1, 0.8], [0.05, 0.7, 0.0]]], np.float32)
    trt = make_fake_trt(boxes=boxes, scores=scores)
    trt.cuda = FakeCuda()
    be = TrtBackend(_engine(tmp_path), trt=trt, cuda=trt.cuda)
    det = Detector(be, conf=0.25, iou=0.5)
    res = det(np.zeros((640, 640, 3), np.uint8))  # gain 0.5, no padding
    assert res.class_ids.tolist() == [0, 1]  # anchor 2 overlaps anchor 0 (same class) and is suppressed
    np.testing.assert_allclose(res.boxes[0], [160, 160, 240, 240])
    assert det.names == {0: "person", 1: "car"} and det.imgsz == (320, 320)
    assert ("set_input_shape", "images", (1, 3, 320, 320)) in trt.calls
    assert ("execute_async_v3", 7) in trt.calls


def test_engine_from_another_tensorrt_is_refused_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="built with TensorRT 8.5.2 on Orin.*rebuild"):
        TrtBackend(_engine(tmp_path, "8.5.2"), trt=make_fake_trt("10.3.0"), cuda=FakeCuda())


def test_undeserializable_engine_is_refused_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="could not deserialize.*Rebuild"):
        TrtBackend(_engine(tmp_path), trt=make_fake_trt(deserialize_ok=False), cuda=FakeCuda())


def test_imgsz_override_on_an_engine_of_dynamic_batch_and_fixed_size_is_refused(tmp_path):
    trt = make_fake_trt(boxes=np.zeros((1, 4, 3), np.float32), scores=np.zeros((1, 2, 3), np.float32))
    trt.cuda = FakeCuda()
    det = Detector(TrtBackend(_engine(tmp_path), trt=trt, cuda=trt.cuda))
    with pytest.raises(ValueError, match=r"input 640x640 \(HxW\): this model takes a fixed 320x320 input"):
        det.detect(np.zeros((480, 640, 3), np.uint8), imgsz=(640, 640))
    assert not any(c[0] == "set_input_shape" and c[2][2:] == (640, 640) for c in trt.calls)  # refused before binding


def test_an_unknown_option_names_detector_and_the_engine_backend_options(tmp_path):
    with pytest.raises(TypeError, match=r"^Detector got an unexpected keyword argument 'confidence': its options are "
                                        r"conf, .*, and for the tensorrt backend trt, cuda, batch$"):
        Detector(_engine(tmp_path), confidence=0.5)


def test_the_tensorrt_backend_on_an_onnx_says_to_build_an_engine_before_looking_for_tensorrt(tmp_path):
    """`demo --backend tensorrt -m model.onnx` said TensorRT was not importable (then: run the .onnx instead)."""
    onnx_file = tmp_path / "student.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    with pytest.raises(ValueError, match=r"backend 'tensorrt' runs a TensorRT \.engine, and student\.onnx is an ONNX: "
                                         r"build one with `detdistill build .*student\.onnx`"):
        Detector(onnx_file, backend="tensorrt")
