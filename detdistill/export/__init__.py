"""Export and deployment tools: ONNX export + parity, INT8 Q/DQ quantization, TensorRT builder, eval, bench.

Only ``onnx_export`` (and ``evaluate`` for ``.pt`` files) import torch / ultralytics; import submodules directly.
"""
