"""INT8 Q/DQ quantization of the real teacher, calibrated on real images through the runtime letterbox."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx

import pytest

from detdistill.export.evaluate import evaluate
from detdistill.export import quantize, sensitivity
from detdistill.export.quantize import quantize_onnx
from detdistill.runtime import Detector
from conftest import export_teacher, val_images

# This test's setup (first 64 coco-mini train images, minmax, cpu target, imgsz 320, the default u8s7 scheme):
# FP32 0.3447 -> INT8 0.3266 mAP50-95 on the 128 coco-mini val images on an AVX-512 VNNI CPU, and the same
# integer arithmetic on an AVX2-only one (u8s7 cannot saturate; checked under qemu-x86_64 -cpu Haswell).
# With full-range int8 weights (u8s8) the AVX2 kernels lost 4.8 points on such a CPU.
MAX_DROP_64_IMAGES = 0.032


def _calib(coco_mini_yaml, n):
    return sorted((coco_mini_yaml.parent / "images" / "train").glob("*.jpg"))[:n]


@pytest.fixture(scope="module")
def cpu_int8(tmp_path_factory, teacher_pt, coco_mini_yaml):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    out = tmp_path_factory.mktemp("q") / "int8-cpu.onnx"
    return fp32, quantize_onnx(fp32, _calib(coco_mini_yaml, 64), out, target="cpu", method="minmax")


def _quantized_nodes(path):
    """Nodes computing in int8: convs with Q/DQ weights; other ops whose inputs come from DQ and output goes to Q."""
    proto = onnx.load(str(path))
    dq_out = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    q_in = {n.input[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    inits = {i.name for i in proto.graph.initializer}
    out = set()
    for n in proto.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "Conv":
            if n.input[1] in dq_out:
                out.add(n.name)
        elif n.output[0] in q_in and all(i in dq_out for i in n.input if i and i not in inits):
            out.add(n.name)
    return proto, out


def test_int8_cpu_accuracy_within_measured_bound_on_this_cpus_kernels(cpu_int8, coco_mini_yaml):
    fp32, res = cpu_int8
    a = evaluate(fp32, coco_mini_yaml).map50_95
    kernels = evaluate(res.path, coco_mini_yaml)
    simulated = evaluate(res.path, coco_mini_yaml, int8="simulate")
    assert res.scheme == "u8s7" and "INT8 kernels, u8s7" in kernels.evaluator
    assert "simulated" in simulated.evaluator
    assert a > 0.3
    assert a - kernels.map50_95 < MAX_DROP_64_IMAGES, (a, kernels.map50_95, kernels.evaluator)
    # the integer kernels compute what exact int8 arithmetic computes, up to their own rounding of requantized
    # outputs (measured 0.7 points apart on 128 images); a saturating CPU would fall several points short
    assert abs(kernels.map50_95 - simulated.map50_95) < 0.015, (kernels, simulated)


def test_cpu_schemes_store_their_weights_as_declared(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    for scheme, dtype, lo, hi in (("u8s7", np.int8, -64, 64), ("u8u8", np.uint8, 0, 255), ("u8s8", np.int8, -127, 127)):
        res = quantize_onnx(fp32, _calib(coco_mini_yaml, 4), tmp_path / f"{scheme}.onnx", scheme=scheme,
                            cache_dir=tmp_path)
        proto = onnx.load(str(res.path))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
        weights = [inits[n.input[0]] for n in proto.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4]
        assert weights and all(w.dtype == dtype for w in weights), scheme
        assert min(int(w.min()) for w in weights) >= lo and max(int(w.max()) for w in weights) <= hi, scheme
        assert max(int(np.abs(w.astype(int)).max()) for w in weights) > (hi - lo) // 4, scheme  # range is used
        meta = json.loads({p.key: p.value for p in proto.metadata_props}["quantization"])
        assert meta["scheme"] == scheme


def test_tensorrt_target_is_evaluated_as_simulated_tensorrt(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    res = quantize_onnx(fp32, _calib(coco_mini_yaml, 4), tmp_path / "trt.onnx", target="tensorrt")
    auto = evaluate(res.path, coco_mini_yaml, limit=8)
    assert auto.evaluator.startswith("simulated TensorRT INT8")
    kernels = evaluate(res.path, coco_mini_yaml, limit=8, int8="kernels")  # nothing for ONNX Runtime to fuse:
    assert kernels.evaluator.startswith("simulated TensorRT INT8") and "fuses no integer kernel" in kernels.evaluator
    assert kernels.map50_95 == auto.map50_95  # the same float simulation (it was labelled "INT8 kernels")
    with pytest.raises(ValueError, match="scheme"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), tmp_path / "bad.onnx", target="tensorrt", scheme="u8s7")


def test_u8s8_model_warns_where_its_kernels_saturate(cpu_int8, tmp_path_factory, teacher_pt, coco_mini_yaml,
                                                     tmp_path, monkeypatch):
    import detdistill.runtime.cpu as cpu
    from detdistill.runtime.backends.onnxruntime import OrtBackend

    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    u8s8 = quantize_onnx(fp32, _calib(coco_mini_yaml, 2), tmp_path / "u8s8.onnx", scheme="u8s8", cache_dir=tmp_path)
    monkeypatch.setattr(cpu, "instruction_set", lambda: "avx2")
    assert "--scheme u8s7" in OrtBackend(u8s8.path, device="cpu").accuracy_warning
    assert OrtBackend(u8s8.path, device="cpu", int8_kernels=False).accuracy_warning is None  # simulated: exact
    assert OrtBackend(cpu_int8[1].path, device="cpu").accuracy_warning is None  # u8s7
    from detdistill.demo import run_demo

    lines: list[str] = []  # the demo, what runs on the device, says it too
    run_demo(u8s8.path, _calib(coco_mini_yaml, 1)[0].parent, show=False, max_frames=1, log=lines.append)
    assert any(line.startswith("warning: ") and "--scheme u8s7" in line for line in lines), lines
    monkeypatch.setattr(cpu, "instruction_set", lambda: "avx512-vnni")
    assert OrtBackend(u8s8.path, device="cpu").accuracy_warning is None


def test_unusable_calibration_images_are_counted_or_refused(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    good = _calib(coco_mini_yaml, 3)
    broken = []
    for f in good:
        b = tmp_path / f"cut-{f.name}"
        b.write_bytes(f.read_bytes()[: f.stat().st_size // 3])  # truncated: OpenCV still decodes it, grey below
        broken.append(b)
    (tmp_path / "notes.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"none of the 4 calibration images is usable .*truncated JPEG"):
        quantize_onnx(fp32, [*broken, tmp_path / "notes.jpg"], tmp_path / "x.onnx")
    res = quantize_onnx(fp32, [*good, *broken], tmp_path / "y.onnx", cache_dir=tmp_path)
    assert res.notes[0].startswith("skipped 3 of 6 calibration images") and "truncated JPEG" in res.notes[0]
    assert "calibrated on 3 images; 500-1000" in res.notes[1]


def test_int8_cpu_structure_keeps_head_outputs_float(cpu_int8, coco_mini_yaml):
    _, res = cpu_int8
    proto, quantized = _quantized_nodes(res.path)
    assert any("Sigmoid" in n for n in quantized) and any("/model.2/" in n for n in quantized)  # all op types
    assert not any("/dfl/" in n or n.endswith(".2/Conv") for n in quantized)  # head outputs + DFL in float
    assert any("/model.22/cv2.0/cv2.0.0/" in n for n in quantized)  # only the head's output layers stay float
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["quantization"])["target"] == "cpu" and "names" in meta
    det = Detector(res.path)
    assert len(det(__import__("cv2").imread(str(val_images(coco_mini_yaml, 1)[0])))) > 0


def test_tensorrt_target_is_symmetric_int8_on_convs(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    res = quantize_onnx(fp32, _calib(coco_mini_yaml, 16), tmp_path / "trt.onnx", target="tensorrt",
                        keep_float="head")
    proto, quantized = _quantized_nodes(res.path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    zps = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)  # TensorRT: symmetric int8
    ops = {n.op_type for n in proto.graph.node if n.name in quantized}
    assert ops == {"Conv"}
    conv_outputs = {o for n in proto.graph.node if n.op_type == "Conv" for o in n.output}
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in conv_outputs for n in proto.graph.node)
    assert json.loads({p.key: p.value for p in proto.metadata_props}["quantization"])["qdq"] == "conv inputs"
    assert not any("/model.22/" in n for n in quantized)  # keep_float="head": the whole Detect head


def test_the_cpu_target_quantizes_after_the_tensorrt_target_in_one_folder(tmp_path_factory, teacher_pt,
                                                                           coco_mini_yaml, tmp_path):
    # each target calibrates its own tensors: the tensorrt target's cached ranges lack the cpu target's Sigmoid
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    calib = _calib(coco_mini_yaml, 8)
    trt = quantize_onnx(fp32, calib, tmp_path / "trt.onnx", target="tensorrt")
    cpu = quantize_onnx(fp32, calib, tmp_path / "cpu.onnx", target="cpu")
    assert len(list(tmp_path.glob("calib-*.json"))) == 2
    assert {json.loads(dict((p.key, p.value) for p in onnx.load(str(r.path)).metadata_props)["quantization"])["target"]
            for r in (trt, cpu)} == {"tensorrt", "cpu"}


def test_sensitivity_search_keeps_a_layer_in_float_when_the_budget_demands_it(
        tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    kw = dict(target="cpu", val_data=coco_mini_yaml, val_limit=24, cache_dir=tmp_path)
    calib = _calib(coco_mini_yaml, 16)  # few images: a clearly visible drop
    probe = quantize_onnx(fp32, calib, tmp_path / "probe.onnx", max_drop=1.0, **kw)
    assert probe.float_layers == [] and probe.drop is not None
    assert probe.drop > 0.002, "the base INT8 model should lose some accuracy on these images"
    low, high = probe.drop_interval  # bootstrapped over the 24 budget images
    assert probe.budget_images == 24 and low <= probe.drop <= high
    assert not any("cannot rule out" in n for n in probe.notes)  # a drop above 1.0 is ruled out
    budget = probe.drop / 2
    res = quantize_onnx(fp32, calib, tmp_path / "searched.onnx", max_drop=budget, max_float_layers=6, **kw)
    assert 1 <= len(res.float_layers) <= 6
    assert res.float_layers == [name for name, _ in res.sensitivity[:len(res.float_layers)]]  # most sensitive first
    assert res.sensitivity[0][0] in {"model.0", "model.1", "model.2"}  # YOLOv8's stem convs lose most in INT8
    assert res.drop <= budget
    # 24 images measure a drop to a few points, not to half of a small one: the user is told so
    assert res.drop_interval[1] > budget
    assert any("cannot rule out a drop above the budget" in n and f"max_drop={budget:g}" in n for n in res.notes)
    meta = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert json.loads(meta["quantization"])["float_layers"] == res.float_layers


def test_an_unreachable_budget_raises_or_keeps_the_best_attempt(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path,
                                                                 monkeypatch):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    kw = dict(target="cpu", val_data=coco_mini_yaml, val_limit=16, cache_dir=tmp_path, max_float_layers=2)
    calib = _calib(coco_mini_yaml, 8)
    with pytest.raises(RuntimeError, match="could not meet max_drop=-0.5 with 2 layers in float"):
        quantize_onnx(fp32, calib, tmp_path / "strict.onnx", max_drop=-0.5, **kw)
    [ranking] = tmp_path.glob("calib-*-sensitivity-*.json")  # the probes' ranking, saved beside the ranges
    base = quantize_onnx(fp32, calib, tmp_path / "base.onnx", max_drop=1.0, **kw)
    # the same search again reads the ranking instead of probing every layer again
    monkeypatch.setattr(quantize, "rank_sensitivity", lambda *a, **k: pytest.fail("the layers were probed again"))
    res = quantize_onnx(fp32, calib, tmp_path / "best.onnx", max_drop=-0.5, strict=False, **kw)
    assert res.sensitivity == [tuple(pair) for pair in json.loads(ranking.read_text())["ranking"]]
    assert len(res.sensitivity) > 10 and res.sensitivity[0][1] >= res.sensitivity[-1][1]
    assert not res.within_budget and res.path.is_file()
    assert res.int8_map >= base.int8_map  # the most accurate of the attempts, the plain INT8 model included
    assert res.drop_interval[0] <= res.drop <= res.drop_interval[1]  # the interval of the attempt kept
    meta = json.loads({p.key: p.value for p in onnx.load(str(res.path)).metadata_props}["quantization"])
    assert meta["float_layers"] == res.float_layers
    if res.float_layers:  # the file on disk is the attempt that scored int8_map
        assert evaluate(res.path, coco_mini_yaml, limit=16).map50_95 == pytest.approx(res.int8_map, abs=1e-6)


def test_bad_requests_are_explained(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    with pytest.raises(ValueError, match="max_drop needs val_data"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), max_drop=0.01)
    with pytest.raises(ValueError, match="has no 'test' split to measure max_drop on"):  # before any calibration
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), max_drop=0.01, val_data=coco_mini_yaml, val_split="test")
    with pytest.raises(ValueError, match="calibration method"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), method="kl")
    with pytest.raises(ValueError, match="unknown layers"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), float_layers=["model.99"])
    with pytest.raises(FileNotFoundError, match="no images"):
        quantize_onnx(fp32, tmp_path)
    moved = tmp_path / "moved.yaml"  # a data YAML whose val folder is gone: named before any calibration
    moved.write_text(f"path: {tmp_path / 'gone'}\ntrain: images/train\nval: images/val\nnames: [person]\n")
    with pytest.raises(FileNotFoundError, match="split 'val' path .*gone.* does not exist"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), tmp_path / "q.onnx", max_drop=0.01, val_data=moved)
    with pytest.raises(PermissionError, match="cannot write /sys/q.onnx .*pass -o a path in a folder you can write"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), "/sys/q.onnx")
    under_file = tmp_path / "notes.txt"
    under_file.write_text("mine")
    with pytest.raises(PermissionError, match=r"-o .*notes.txt/q.onnx: .*notes.txt is a file, not a folder"):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), under_file / "q.onnx")
    assert under_file.read_text() == "mine"
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("calib-*"))  # nothing calibrated
    (tmp_path / "empty.onnx").touch()
    with pytest.raises(ValueError, match="empty.onnx is empty .*export it again"):
        quantize_onnx(tmp_path / "empty.onnx", _calib(coco_mini_yaml, 2))


def test_onnx_runtimes_preprocessing_advice_is_not_printed(tmp_path_factory, teacher_pt, coco_mini_yaml, tmp_path,
                                                           caplog):
    fp32 = export_teacher(tmp_path_factory, teacher_pt)
    with caplog.at_level(logging.WARNING):
        quantize_onnx(fp32, _calib(coco_mini_yaml, 2), tmp_path / "q.onnx")
    assert (tmp_path / "q.onnx").is_file() and not any("pre-processing" in r.getMessage() for r in caplog.records)


def test_the_sensitivity_cache_is_keyed_by_everything_the_probes_depend_on(tmp_path, coco_mini_yaml, monkeypatch):
    calib_cache, probes = tmp_path / "calib-abc-def-cpu-minmax-b1.json", _calib(coco_mini_yaml, 4)
    settings = {"scheme": "u8s7", "per_channel": True, "keep_float": "head-outputs", "conv_outputs": False,
                "fixed": [], "candidates": ["model.0", "model.1"]}
    path = sensitivity.sensitivity_cache_path(calib_cache, probes, settings)
    assert path.parent == tmp_path and path.name.startswith("calib-abc-def-cpu-minmax-b1-sensitivity-")
    assert sensitivity.sensitivity_cache_path(calib_cache, probes, dict(reversed(settings.items()))) == path
    others = [sensitivity.sensitivity_cache_path(calib_cache, probes[:3], settings),
              sensitivity.sensitivity_cache_path(tmp_path / "calib-abd-def-cpu-minmax-b1.json", probes, settings),
              *(sensitivity.sensitivity_cache_path(calib_cache, probes, {**settings, key: value}) for key, value in
                (("scheme", "u8u8"), ("fixed", ["model.2"]), ("keep_float", "head"), ("per_channel", False)))]
    monkeypatch.setattr(sensitivity, "instruction_set", lambda: "arm64")  # another CPU's kernels round otherwise
    others.append(sensitivity.sensitivity_cache_path(calib_cache, probes, settings))
    assert path not in others and len(set(others)) == len(others)
    path.write_text("{not json")  # a damaged cache is ranked again and rewritten
    assert sensitivity.cached_ranking(path, lambda: [("model.1", 2.0), ("model.0", 1.0)]) == [("model.1", 2.0),
                                                                                           ("model.0", 1.0)]
    assert sensitivity.cached_ranking(path, lambda: pytest.fail("ranked again")) == [("model.1", 2.0), ("model.0", 1.0)]
