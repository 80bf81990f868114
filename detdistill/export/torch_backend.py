"""A runtime backend that runs an ultralytics ``.pt`` in PyTorch, so ``.pt`` files evaluate through the same
letterbox / decode / NMS as the deployed artifacts. Imports torch (export side only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..models import load_detection_checkpoint, trained_imgsz
from ..runtime.metadata import ModelInfo
from .wrapper import ExportWrapper, input_size


TORCH_DEVICES = ("cpu", "cuda", "auto")


class TorchBackend:
    """Backend protocol over a PyTorch detection model (CPU or CUDA), static square ``imgsz`` (default: the size the
    checkpoint was trained at, as ultralytics' ``YOLO(path).val()`` takes it, else 640)."""

    def __init__(self, weights: str | Path, imgsz: int | tuple[int, int] | None = None, device: str = "cpu") -> None:
        import torch  # lazy: torch (export.evaluate imports this module and stays torch-free)

        if device not in TORCH_DEVICES:
            raise ValueError(f"device {device!r}: a .pt runs in PyTorch, on {', '.join(TORCH_DEVICES)} (auto: a CUDA "
                             "GPU when PyTorch sees one); for TensorRT, export the model and build an engine")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda': PyTorch sees no CUDA GPU here (a CPU-only torch, or no driver): use "
                             "device cpu, or auto to take a GPU where there is one")
        model, ckpt = load_detection_checkpoint(weights, role="model")
        imgsz = imgsz or trained_imgsz(ckpt)
        self.model, _ = ExportWrapper.build(model, dynamic_shape=False)
        self.device = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        hw = input_size(model, imgsz)
        names = {int(k): str(v) for k, v in model.names.items()}
        self.info = ModelInfo.from_mapping({"names": json.dumps(names), "imgsz": json.dumps(list(hw)),
                                            "stride": str(int(max(model.stride))),
                                            "postprocess": "none" if self.model.nms_free else "host_nms"})
        self.input_shape = (1, 3, *hw)
        self.input_dtype = np.float32

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch in PyTorch."""
        import torch  # lazy: torch (as in __init__)

        with torch.no_grad():
            return [t.cpu().numpy() for t in self.model(torch.from_numpy(x).to(self.device))]

