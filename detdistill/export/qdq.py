"""Whether an ONNX model is INT8 Q/DQ (explicitly quantized), read from its graph or detdistill's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..runtime.backends.onnxruntime import onnx_metadata
from ..runtime.metadata import ModelInfo

if TYPE_CHECKING:
    import onnx


def has_qdq(proto: onnx.ModelProto) -> bool:
    """Whether the ONNX carries explicit quantization (QuantizeLinear / DequantizeLinear nodes): a PTQ model,
    or the export of a quantization-aware (QAT/QAD) one."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)


def is_qdq(model: Path) -> bool:
    """Whether an ONNX is INT8 Q/DQ: detdistill records it in the metadata of every Q/DQ file it writes (quantize,
    QAD export); another producer's file is read with the onnx package, or taken at its word without it (a
    runtime-only install)."""
    info = ModelInfo.from_mapping(onnx_metadata(model))
    if info.quantization or info.extra.get("producer") == "detdistill":
        return bool(info.quantization)
    try:
        import onnx  # lazy: onnx (the export extra; a runtime-only install has none)
    except ModuleNotFoundError:
        return True
    return has_qdq(onnx.load(str(model), load_external_data=False))
