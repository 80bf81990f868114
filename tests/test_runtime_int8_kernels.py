"""ONNX Runtime's INT8 integer kernels against the exact Q/DQ simulation, on a one-convolution model.

The convolution sees uint8 activations at 255 and int8 weights at their extreme. The simulation
(Q/DQ nodes run in float, detdistill's stand-in for TensorRT) sums the products exactly. The integer
kernels agree with it on CPUs that accumulate in 32 bits (VNNI x86, ARM) and fall short on x86 without
VNNI, whose 16-bit pair sums saturate; 7-bit weights (the ``u8s7`` scheme) agree everywhere. The same
files are run again on emulated CPUs (``tools/emulated_cpu.py``: an AVX2-only x86, an ARMv8.0 core without
dot product, an ARMv8.2 core with it), so the table of saturating schemes is checked against the real
kernels of CPUs this machine is not.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from detdistill.runtime.cpu import instruction_set, saturation_warning, scheme_saturates

from conftest import load_tool
from int8_kernel_probe import CHANNELS, KERNELS, centre_output

PROBE = Path(__file__).with_name("int8_kernel_probe.py")


def one_conv_model(path, weight: int) -> None:
    """x -> Q/DQ (uint8, 1/255) -> Conv with Q/DQ int8 weights all equal to ``weight`` -> Q/DQ -> y."""
    w = np.full((KERNELS, CHANNELS, 3, 3), weight, np.int8)
    inits = [
        numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.array(0.01, np.float32), "w_s"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "x_s"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zp"),
        numpy_helper.from_array(np.array(0.5, np.float32), "y_s"),
        numpy_helper.from_array(np.array(0, np.uint8), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["yf"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["yf", "y_s", "y_zp"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "one_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, KERNELS, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.save(model, str(path))


@pytest.mark.parametrize("weight, scheme", [(63, "u8s7"), (127, "u8s8")])
def test_integer_kernels_match_the_exact_simulation_unless_this_cpu_saturates(tmp_path, weight, scheme):
    model = tmp_path / f"{scheme}.onnx"
    one_conv_model(model, weight)
    exact = min(CHANNELS * 9 * 1.0 * weight * 0.01, 255 * 0.5)  # sum of products, clipped by the uint8 output
    simulated = centre_output(model, int8_kernels=False)
    kernels = centre_output(model, int8_kernels=True)
    assert simulated == pytest.approx(exact, abs=0.5)
    if scheme_saturates(scheme):  # x86 without VNNI: 255 * 127 * 2 > 32767 in each 16-bit pair sum
        assert kernels < simulated - 10, (instruction_set(), kernels, simulated)
    else:
        assert kernels == pytest.approx(simulated, abs=0.5), (instruction_set(), kernels, simulated)


EMULATED_ISA = {"haswell": "avx2", "cortex-a57": "arm64", "cortex-a76": "arm64-dotprod"}


@pytest.mark.parametrize("cpu", list(EMULATED_ISA))
def test_emulated_cpus_saturate_exactly_where_the_scheme_table_says(tmp_path, cpu):
    emulated = load_tool("emulated_cpu")
    if why := emulated.ready(cpu):
        pytest.skip(f"cannot emulate {cpu}: {why}")
    models = {}
    for weight, scheme in [(63, "u8s7"), (127, "u8s8")]:
        models[scheme] = tmp_path / f"{scheme}.onnx"
        one_conv_model(models[scheme], weight)
    cmd, env = emulated.python_command(cpu)
    res = subprocess.run([*cmd, str(PROBE), *map(str, models.values())], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    probe = json.loads(res.stdout.strip().splitlines()[-1])
    assert probe["isa"] == EMULATED_ISA[cpu]  # instruction_set() describes the emulated CPU, not this one
    for scheme, path in models.items():
        kernels, exact = probe["out"][str(path)], centre_output(path, int8_kernels=False)
        if scheme_saturates(scheme, probe["isa"]):
            assert kernels < exact - 10, (cpu, scheme, kernels, exact)
        else:
            assert kernels == pytest.approx(exact, abs=0.5), (cpu, scheme, kernels, exact)


def test_instruction_set_is_named_and_the_warning_names_the_fix():
    assert instruction_set() in {"avx512-vnni", "avx-vnni", "avx512", "avx2", "x86", "arm64-dotprod", "arm64"}
    assert saturation_warning("u8s7", "avx2") is None and saturation_warning("u8s8", "avx512-vnni") is None
    assert saturation_warning("u8s8", "arm64-dotprod") is None and saturation_warning(None, "avx2") is None
    msg = saturation_warning("u8s8", "avx2")
    assert "saturate" in msg and "avx2" in msg and "--scheme u8s7" in msg


def test_the_cpu_model_is_lscpus_model_name():
    import platform
    import shutil

    from detdistill.runtime.cpu import cpu_model

    if shutil.which("lscpu") is None:
        pytest.skip("lscpu is not installed here")
    listed = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [line.split(":", 1)[1].strip() for line in listed.splitlines() if line.startswith("Model name:")]
    assert cpu_model() == (names[0] if names else platform.machine())
