"""TensorRT engine builder decisions, through the explicit seam: a fake ``tensorrt`` module object."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from detdistill.export.platform_info import GpuInfo, jetpack_for, read_l4t, tensorrt_install_hint
from detdistill.export.tensorrt_build import BuildError, build_engine, calib_cache_file, plan_build
from conftest import export_teacher

GPU = GpuInfo("Orin (nvgpu)", "8.7")


class _Flags:
    def __getattr__(self, name):
        return name


def fake_trt(version: str, num_dla: int = 0, layers=("/inner/model.22/dfl/conv/Conv", "/inner/model.3/conv/Conv")):
    log: dict = {"flags": [], "calibrator": None, "layers": {}}
    trt = types.SimpleNamespace(__version__=version, log=log, float32="float32", float16="float16")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5)
    trt.BuilderFlag = _Flags()
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DeviceType = types.SimpleNamespace(DLA="DLA", GPU="GPU")
    if int(version.split(".")[0]) < 11:  # TensorRT 11 removed the calibrators
        trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})
        trt.IInt8MinMaxCalibrator = type("IInt8MinMaxCalibrator", (), {"__init__": lambda self: None})

    class Layer:
        def __init__(self, name):
            self.name, self.num_outputs, self.precision = name, 1, None

        def set_output_type(self, i, t):
            log["layers"][self.name] = t

    class Network:
        num_layers = len(layers)

        def __init__(self, flags):
            log["network_flags"] = flags
            self._layers = [Layer(n) for n in layers]

        def get_input(self, i):
            return types.SimpleNamespace(name="images", shape=log.get("input_shape", (1, 3, 320, 320)))

        def get_layer(self, i):
            return self._layers[i]

    class Config:
        def __init__(self):
            self.int8_calibrator = None

        def set_flag(self, f):
            log["flags"].append(f)

        def set_memory_pool_limit(self, pool, size):
            log["workspace"] = size

        def add_optimization_profile(self, p):
            log["profile"] = p.shapes

        def create_timing_cache(self, blob):
            log["timing_in"] = blob
            return types.SimpleNamespace(serialize=lambda: b"timings")

        def set_timing_cache(self, cache, ignore):
            pass

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b"timings")

        def get_calibration_profile(self):
            return None

        def set_calibration_profile(self, p):
            pass

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, lo, opt, hi)

    class Builder:
        num_DLA_cores = num_dla

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log["calibrator"] = config.int8_calibrator
            if config.int8_calibrator is not None:  # drive the calibrator like TensorRT does
                cal = config.int8_calibrator
                assert cal.get_batch_size() >= 1
                log["calib_batches"] = 0
                while cal.get_batch(["images"]) is not None:
                    log["calib_batches"] += 1
                cal.write_calibration_cache(b"cache")
            log["dla"] = getattr(config, "DLA_core", None)
            return b"ENGINE"

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            log["parsed"] = path
            return True

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt


class FakeCuda:
    def malloc(self, n):
        return 1

    def htod(self, ptr, host):
        assert host.dtype == np.float32 and host.shape[1:] == (3, 320, 320)

    def synchronize(self):
        pass


@pytest.fixture()
def onnx_320(tmp_path_factory, teacher_pt, tmp_path) -> Path:
    src = export_teacher(tmp_path_factory, teacher_pt)
    dst = tmp_path / "m.onnx"
    dst.write_bytes(src.read_bytes())
    return dst


def test_plan_fp16_and_int8_on_trt10():
    assert plan_build("10.3.0", "fp16", qdq=False).flags == ["FP16"]
    p = plan_build("10.3.0", "int8", qdq=False, calibrator="minmax")
    assert p.calibrator == "minmax" and "INT8" in p.flags and p.pin_head
    p = plan_build("10.3.0", "int8", qdq=True)
    assert p.calibrator is None and "INT8" in p.flags and not p.pin_head
    assert plan_build("8.6.1", "fp32", qdq=False).network_flags == ["EXPLICIT_BATCH"]


def test_plan_trt11_is_strongly_typed_and_needs_qdq():
    p = plan_build("11.0.0", "int8", qdq=True)
    assert p.network_flags == ["STRONGLY_TYPED"] and p.flags == [] and p.calibrator is None
    with pytest.raises(BuildError, match="strongly typed.*detdistill quantize"):
        plan_build("11.0.0", "int8", qdq=False)
    with pytest.raises(BuildError, match="too old"):
        plan_build("8.4.0", "fp16", qdq=False)


def test_plan_dla_rules():
    with pytest.raises(BuildError, match="only on Jetson"):
        plan_build("10.3.0", "fp16", qdq=False, dla_core=0)
    with pytest.raises(BuildError, match="FP16 or INT8"):
        plan_build("10.3.0", "fp32", qdq=False, dla_core=0, is_jetson=True, num_dla=2)
    with pytest.raises(BuildError, match="has 0 DLA"):
        plan_build("10.3.0", "fp16", qdq=False, dla_core=0, is_jetson=True, num_dla=0)
    p = plan_build("10.3.0", "fp16", qdq=False, dla_core=1, is_jetson=True, num_dla=2)
    assert p.dla_core == 1 and "GPU_FALLBACK" in p.flags


def test_build_fp16_writes_engine_and_sidecar(onnx_320, tmp_path):
    trt = fake_trt("10.3.0")
    out = build_engine(onnx_320, precision="fp16", workspace_gb=2, timing_cache=tmp_path / "t.cache", trt=trt,
                       gpu=GPU, l4t="36.4.0")
    assert out.read_bytes() == b"ENGINE" and (tmp_path / "t.cache").read_bytes() == b"timings"
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["tensorrt"] == "10.3.0" and side["gpu"] == GPU.name and side["compute_capability"] == "8.7"
    assert side["precision"] == "fp16" and side["imgsz"] == [320, 320] and side["names"]["0"] == "person"
    assert side["jetpack"] == "6.x" and side["l4t"] == "36.4.0" and len(side["source_onnx_sha256"]) == 64
    assert trt.log["flags"] == ["FP16"] and trt.log["workspace"] == 2 << 30


def test_build_implicit_int8_calibrates_through_letterbox_with_keyed_cache(onnx_320, coco8_yaml):
    trt = fake_trt("8.6.1")
    images = coco8_yaml.parent / "images" / "val"
    build_engine(onnx_320, precision="int8", calib=images, calibrator="entropy", trt=trt, gpu=GPU, cuda=FakeCuda(),
                 l4t=None)
    assert type(trt.log["calibrator"]).__mro__[1].__name__ == "IInt8EntropyCalibrator2"
    assert trt.log["calib_batches"] == 4
    assert {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"} <= set(trt.log["flags"])
    assert trt.log["layers"] == {"/inner/model.22/dfl/conv/Conv": "float32"}  # head outputs pinned, rest free
    caches = list(onnx_320.parent.glob("*.cache"))
    assert len(caches) == 1 and "-b1-entropy" in caches[0].name
    other = calib_cache_file(onnx_320, sorted(images.glob("*"))[:2], 1, "entropy", onnx_320.parent)
    assert other != caches[0]  # other images -> other cache


def test_build_errors_are_clear(onnx_320, tmp_path):
    with pytest.raises(BuildError, match="strongly typed"):
        build_engine(onnx_320, precision="int8", calib=tmp_path, trt=fake_trt("11.0.0"), gpu=GPU)
    with pytest.raises(BuildError, match="calibration images"):
        build_engine(onnx_320, precision="int8", trt=fake_trt("10.3.0"), gpu=GPU)
    with pytest.raises(BuildError, match="static batch"):
        build_engine(onnx_320, batch=(1, 2, 4), trt=fake_trt("10.3.0"), gpu=GPU)


def test_platform_helpers(tmp_path, monkeypatch):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    assert read_l4t(f) == "36.4.3" and jetpack_for("36.4.3") == "6.x" and jetpack_for("35.3.1") == "5.1"
    assert read_l4t(tmp_path / "absent") is None
    assert "python3-libnvinfer" in tensorrt_install_hint("35.3.1") and "pip install tensorrt" in tensorrt_install_hint(None)
    import detdistill.export.tensorrt_build as tb

    monkeypatch.setattr(tb, "detect_gpu", lambda: None)
    with pytest.raises(BuildError, match="no CUDA GPU"):
        build_engine(_dummy(tmp_path), trt=fake_trt("10.3.0"))
    with pytest.raises(BuildError, match="TensorRT is not installed.*JetPack 6"):
        build_engine(_dummy(tmp_path), l4t="36.4.0")  # no tensorrt module on this machine


def _dummy(tmp_path: Path) -> Path:
    p = tmp_path / "d.onnx"
    p.write_bytes(b"")
    return p
