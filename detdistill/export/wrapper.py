"""The detection model as ONNX export and the torch evaluator see it: fused, in export mode, boxes split from scores."""

from __future__ import annotations

import copy


def input_size(model, imgsz: int | tuple[int, int]) -> tuple[int, int]:
    """``imgsz`` as ``(h, w)``, checked to be positive multiples of ``model``'s stride (ValueError naming both)."""
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
    stride = int(max(model.stride))
    if min(hw) <= 0 or any(v % stride for v in hw):
        raise ValueError(f"imgsz {hw} must be positive multiples of the model stride {stride} (e.g. 320, 640)")
    return hw


def has_one2one(head) -> bool:
    """Whether a Detect head carries an NMS-free one-to-one branch (YOLOv10, YOLO26)."""
    return getattr(head, "one2one_cv2", None) is not None


class ExportWrapper:
    """Built lazily (needs torch): runs the model in export mode and splits boxes from scores.

    The DFL integral is exported as a softmax over the last axis and a matrix product with the bins: the same
    numbers as ultralytics' softmax over the bins' axis and 1x1 convolution, which ONNX Runtime's CPU kernels run
    several times slower (docs/benchmarks.md, "ONNX on CPU").

    A head with a one-to-one branch (YOLOv10, YOLO26) is exported through that branch (``one2one=True``,
    the default): the same two outputs, ``boxes`` xywh and ``scores``, whose top-k needs no NMS. The built
    module's ``nms_free`` attribute says which branch it runs.
    """

    @staticmethod
    def build(model, dynamic_shape: bool, one2one: bool = True):
        import torch  # lazy: torch, ultralytics (export.evaluate imports this module and stays torch-free)
        from ultralytics.nn.modules import C2f, DFL, Detect

        model = copy.deepcopy(model).float().eval()
        for p in model.parameters():
            p.requires_grad = False
        heads = [m for m in model.modules() if isinstance(m, Detect)]
        if not heads:
            raise ValueError("the model has no YOLO Detect head")
        head = heads[-1]
        nms_free = one2one and has_one2one(head)
        if has_one2one(head):
            head.end2end = nms_free  # which branch fuse() keeps
        model = model.fuse()
        if nms_free and head.cv2 is None:
            # run the one-to-one branch as a plain head: decoded xywh boxes and sigmoid scores, no top-k
            head.cv2, head.cv3 = head.one2one_cv2, head.one2one_cv3
            head.one2one_cv2 = head.one2one_cv3 = None
        for m in model.modules():
            if isinstance(m, Detect):
                m.export, m.format, m.dynamic, m.shape = True, "onnx", dynamic_shape, None
            elif isinstance(m, C2f):
                m.forward = m.forward_split
            if isinstance(getattr(m, "dfl", None), DFL):
                m.dfl = _last_axis_dfl(m.dfl)
        if getattr(head, "end2end", False):
            raise ValueError("could not select the one-to-one branch of this end-to-end head")

        class Split(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner
                self.nms_free = nms_free

            def forward(self, x):
                y = self.inner(x)
                y = y[0] if isinstance(y, (list, tuple)) else y
                return y[:, :4], y[:, 4:]

        return Split(model).eval(), head


def _last_axis_dfl(dfl):
    """``dfl``'s expectation over its bins (Li et al., Generalized Focal Loss, NeurIPS 2020) as a softmax over the
    last axis and a product with the bins: (B, 4 * bins, A) logits -> (B, 4, A) distances."""
    import torch  # lazy: torch

    class LastAxisDFL(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("bins", dfl.conv.weight.detach().reshape(-1, 1).clone())  # (bins, 1): 0 .. bins-1
            self.n = len(self.bins)

        def forward(self, x):
            b, _, a = x.shape
            p = x.view(b, 4, self.n, a).transpose(2, 3).softmax(-1)  # (B, 4, A, bins)
            return (p @ self.bins).view(b, 4, a)

    return LastAxisDFL()
