"""Engines from an ``export --nms`` ONNX: the network up to the NMS inputs plus TensorRT's EfficientNMS_TRT plugin,
through the builder's seam (a fake ``tensorrt`` module implementing the TensorRT 10 calls used); and the runtime on
fixed-shape NMS outputs named as an engine names them."""

from __future__ import annotations

import json
import types
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from detdistill.export.onnx_export import export_onnx
from detdistill.export.platform_info import GpuInfo
from detdistill.export.tensorrt_build import BuildError, build_engine
from detdistill.runtime import Detector
from detdistill.runtime.metadata import ModelInfo
from conftest import export_teacher

GPU = GpuInfo("Orin (nvgpu)", "8.7")


class _Enum:
    def __getattr__(self, name):
        return name


class Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


def fake_trt(version="10.3.0", plugins=True, creator=True):
    log: dict = {"marked": [], "unmarked": []}
    trt = types.SimpleNamespace(__version__=version, log=log)
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5)
    trt.BuilderFlag = _Enum()
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.PluginFieldType = types.SimpleNamespace(INT32="INT32", FLOAT32="FLOAT32")
    trt.PluginField = lambda name, data, kind: (name, data.tolist(), data.dtype.name, kind)
    trt.PluginFieldCollection = list
    trt.init_libnvinfer_plugins = lambda logger, namespace: plugins

    class Creator:
        def create_plugin(self, name, fields):
            log["plugin"] = (name, {f[0]: f[1][0] for f in fields}, {f[0]: f[2] for f in fields})
            return "PLUGIN"

    class Registry:
        def get_creator(self, name, version, namespace):
            log["creator"] = (name, version)
            return Creator() if creator else None

    trt.get_plugin_registry = Registry

    class Layer:
        def __init__(self, n):
            self.outputs = [Tensor(f"out{i}", None) for i in range(n)]

        def get_output(self, i):
            return self.outputs[i]

    class Network:
        def __init__(self, flags):
            self.outputs: list[Tensor] = []

        def get_input(self, i):
            return Tensor(log["input_name"], log["input_shape"])

        @property
        def num_outputs(self):
            return len(self.outputs)

        def get_output(self, i):
            return self.outputs[i]

        def add_shuffle(self, t):
            log["shuffled"] = t.name
            return types.SimpleNamespace(get_output=lambda i: Tensor("scores_bnc", None), second_transpose=None)

        def add_plugin_v2(self, inputs, plugin):
            log["plugin_inputs"] = [t.name for t in inputs]
            return Layer(4)

        def unmark_output(self, t):
            log["unmarked"].append(t.name)
            self.outputs.remove(t)

        def mark_output(self, t):
            log["marked"].append(t.name)
            self.outputs.append(t)

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path):
            proto = onnx.load(path)
            log["parsed_nodes"] = {n.op_type for n in proto.graph.node}
            inp = proto.graph.input[0]
            log["input_name"] = inp.name
            log["input_shape"] = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)
            self.network.outputs = [Tensor(o.name, None) for o in proto.graph.output]
            return True

    class Config:
        def set_flag(self, f):
            pass

    class Builder:
        num_DLA_cores = 0

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            log["final_outputs"] = [t.name for t in network.outputs]
            return b"ENGINE"

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt


@pytest.fixture(scope="module")
def nms_onnx(tmp_path_factory, teacher_pt) -> Path:
    host = export_teacher(tmp_path_factory, teacher_pt)
    out = host.with_name("teacher320-nms-trt.onnx")
    if not out.exists():
        export_onnx(host.with_name("teacher.pt"), out, imgsz=320, nms=True, max_det=100, nms_conf=0.25, nms_iou=0.6)
    return out


def test_graph_nms_builds_with_efficient_nms_plugin(nms_onnx, tmp_path):
    trt = fake_trt()
    out = build_engine(nms_onnx, tmp_path / "m.engine", precision="fp16", trt=trt, gpu=GPU, l4t=None)
    log = trt.log
    assert "NonMaxSuppression" not in log["parsed_nodes"] and "Conv" in log["parsed_nodes"]  # cut before the NMS
    assert log["creator"] == ("EfficientNMS_TRT", "1")
    name, values, dtypes = log["plugin"]
    assert values == {"background_class": -1, "max_output_boxes": 100, "score_threshold": pytest.approx(0.25),
                      "iou_threshold": pytest.approx(0.6), "score_activation": 0, "class_agnostic": 0,
                      "box_coding": 1}
    assert dtypes["max_output_boxes"] == "int32" and dtypes["iou_threshold"] == "float32"
    assert log["plugin_inputs"] == ["nms_boxes", "scores_bnc"] and log["shuffled"] == "scores"
    assert sorted(log["unmarked"]) == ["nms_boxes", "scores"]
    assert log["final_outputs"] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["postprocess"] == "graph_nms" and side["nms"]["max_det"] == 100
    info = ModelInfo.from_mapping(side)
    assert info.postprocess == "graph_nms" and info.nms["iou"] == 0.6


def test_a_graph_nms_cut_above_the_eval_conf_warns_that_map_reads_lower(nms_onnx):
    """Scoring keeps every box down to conf 0.001; a graph cut at 0.25 cannot give them, and says what that costs."""
    with pytest.warns(UserWarning, match=r"keeps scores above 0.25 and at most 100 boxes; conf=0.001, max_det=300 "
                                         r"cannot go past them, so its mAP reads lower .* --nms-conf 0.001"):
        Detector(nms_onnx, conf=0.001, iou=0.6, max_det=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Detector(nms_onnx, conf=0.25, iou=0.6, max_det=100)  # the graph's own settings: nothing to say


def test_missing_efficient_nms_plugin_fails_clearly(nms_onnx, tmp_path):
    with pytest.raises(BuildError, match=r"no EfficientNMS_TRT plugin.*libnvinfer-plugin10.*without --nms"):
        build_engine(nms_onnx, tmp_path / "m.engine", trt=fake_trt(creator=False), gpu=GPU, l4t=None)
    with pytest.raises(BuildError, match=r"could not load its plugin library.*without --nms"):
        build_engine(nms_onnx, tmp_path / "m.engine", trt=fake_trt(plugins=False), gpu=GPU, l4t=None)


def test_host_nms_onnx_builds_without_plugin(tmp_path_factory, teacher_pt, tmp_path):
    trt = fake_trt(creator=False)
    build_engine(export_teacher(tmp_path_factory, teacher_pt), tmp_path / "m.engine", trt=trt, gpu=GPU, l4t=None)
    assert "creator" not in trt.log and trt.log["final_outputs"] == ["boxes", "scores"]


class EngineLike:
    """A backend whose outputs come in an engine's own order, named as the EfficientNMS outputs are."""

    outputs = ["det_scores", "num_dets", "det_classes", "det_boxes"]
    input_shape = (1, 3, 64, 64)
    input_dtype = np.float32

    def __init__(self):
        self.info = ModelInfo.from_mapping({"names": json.dumps({0: "a", 1: "b"}), "imgsz": "[64, 64]",
                                            "postprocess": "graph_nms",
                                            "nms": json.dumps({"conf": 0.1, "iou": 0.7, "max_det": 3})})

    def infer(self, x):
        scores = np.array([[0.9, 0.5, 0.0]], np.float32)
        boxes = np.array([[[0, 0, 32, 32], [8, 8, 40, 40], [0, 0, 0, 0]]], np.float32)
        return [scores, np.array([[2]], np.int32), np.array([[1, 0, 0]], np.int32), boxes]


def test_detector_reads_graph_nms_outputs_by_name():
    det = Detector(EngineLike(), conf=0.3, max_det=3)
    res = det(np.zeros((128, 128, 3), np.uint8))  # 2x the input: boxes scale back by 2
    assert res.class_ids.tolist() == [1, 0] and np.allclose(res.scores, [0.9, 0.5])
    assert np.allclose(res.boxes, [[0, 0, 64, 64], [16, 16, 80, 80]])
    assert len(Detector(EngineLike(), conf=0.6, max_det=3)(np.zeros((64, 64, 3), np.uint8))) == 1
    assert Detector(EngineLike(), classes=[0], max_det=3)(np.zeros((64, 64, 3), np.uint8)).class_ids.tolist() == [0]
