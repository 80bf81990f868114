"""The detection model as ONNX export and the torch evaluator see it: fused, in export mode, boxes split from scores."""

from __future__ import annotations

import copy


class ExportWrapper:
    """Built lazily (needs torch): runs the model in export mode and splits boxes from scores."""

    @staticmethod
    def build(model, dynamic_shape: bool):
        import torch
        from ultralytics.nn.modules import C2f, Detect

        model = copy.deepcopy(model).float().eval()
        for p in model.parameters():
            p.requires_grad = False
        model = model.fuse()
        head = None
        for m in model.modules():
            if isinstance(m, Detect):
                m.export, m.format, m.dynamic, m.shape = True, "onnx", dynamic_shape, None
                head = m
            elif isinstance(m, C2f):
                m.forward = m.forward_split
        if head is None:
            raise ValueError("the model has no YOLO Detect head")
        if getattr(head, "end2end", False):
            raise ValueError("end-to-end (NMS-free) heads are not supported yet; export a YOLOv8/11-style head")

        class Split(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                y = self.inner(x)
                y = y[0] if isinstance(y, (list, tuple)) else y
                return y[:, :4], y[:, 4:]

        return Split(model).eval(), head
