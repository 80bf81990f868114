"""Model metadata: class names, input size and preprocessing, read from ONNX metadata or a JSON sidecar."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any


def _parse(value: Any) -> Any:
    """Metadata values are strings: JSON (detdistill) or Python literals (ultralytics)."""
    if not isinstance(value, str):
        return value
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(value)
        except (ValueError, SyntaxError):
            continue
    return value


@dataclass
class ModelInfo:
    """What the runtime needs to know about a model besides its weights."""

    names: dict[int, str] = field(default_factory=dict)
    imgsz: tuple[int, int] | None = None
    stride: int = 32
    letterbox: str = "val"
    pad_value: int = 114
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def quantization(self) -> dict[str, Any]:
        """The INT8 record ``detdistill quantize`` writes (target, scheme, ...); empty for a float model."""
        q = self.extra.get("quantization")
        return q if isinstance(q, dict) else {}

    @property
    def postprocess(self) -> str:
        """``host_nms`` (decode + NMS on the host), ``none`` (NMS-free head: top-k on the host) or ``graph_nms``."""
        return str(self.extra.get("postprocess") or "host_nms")

    @property
    def nms(self) -> dict[str, Any]:
        """The in-graph NMS settings (conf, iou, max_det) of a ``graph_nms`` model; empty otherwise."""
        n = self.extra.get("nms")
        return n if isinstance(n, dict) else {}

    @property
    def frame(self) -> tuple[int, int] | None:
        """``(h, w)`` of the uint8 BGR frames a model with in-graph preprocessing takes; ``None`` otherwise."""
        pre = self.extra.get("preprocess")
        if isinstance(pre, dict) and pre.get("in_graph") and pre.get("frame"):
            return int(pre["frame"][0]), int(pre["frame"][1])
        return None

    @classmethod
    def from_mapping(cls, meta: dict[str, Any]) -> "ModelInfo":
        """Build from a metadata mapping whose values may be JSON / literal strings."""
        m = {k: _parse(v) for k, v in meta.items()}
        names = m.get("names") or {}
        if isinstance(names, list):
            names = dict(enumerate(names))
        names = {int(k): str(v) for k, v in names.items()}
        imgsz = m.get("imgsz")
        if isinstance(imgsz, int):
            imgsz = (imgsz, imgsz)
        pre = m.get("preprocess") or {}
        return cls(
            names=names,
            imgsz=tuple(int(v) for v in imgsz) if imgsz else None,
            stride=int(m.get("stride", 32)),
            letterbox=str(pre.get("letterbox", "val")),
            pad_value=int(pre.get("pad_value", 114)),
            extra=m,
        )
