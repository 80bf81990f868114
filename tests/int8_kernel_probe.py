"""The centre output of a one-convolution INT8 model, on ONNX Runtime's integer kernels or simulated.

Imported by ``test_runtime_int8_kernels.py`` and run as a script inside an emulated CPU's Python (which has
numpy and ONNX Runtime, no pytest or onnx): ``python int8_kernel_probe.py MODEL...`` prints the instruction
set and each model's integer-kernel output as JSON.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from detdistill.runtime.backends.onnxruntime import OrtBackend
from detdistill.runtime.cpu import instruction_set

CHANNELS, KERNELS = 16, 4


def centre_output(path, int8_kernels: bool) -> float:
    """The first output channel at the centre of the 8x8 map, for an all-ones input."""
    backend = OrtBackend(path, device="cpu", int8_kernels=int8_kernels)
    return float(backend.infer(np.ones((1, CHANNELS, 8, 8), np.float32))[0][0, 0, 4, 4])


if __name__ == "__main__":
    print(json.dumps({"isa": instruction_set(), "out": {p: centre_output(p, True) for p in sys.argv[1:]}}))
