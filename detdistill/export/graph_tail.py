"""Pre- and post-processing written into an exported detector's ONNX graph (plain ONNX operators, no torch).

* :func:`add_graph_nms`: from ``boxes`` (B,4,N) xywh and ``scores`` (B,nc,N) to fixed-shape outputs
  ``num_dets`` (B,1) int32, ``det_boxes`` (B,K,4) xyxy, ``det_scores`` (B,K), ``det_classes`` (B,K) int32,
  through ONNX ``NonMaxSuppression`` (per class, i.e. class-aware, every class above ``conf``: multi-label)
  and a top-K over the kept (class, anchor) pairs. Rows past ``num_dets`` are zero.
* :func:`add_graph_preprocess`: a uint8 (B,H,W,3) BGR frame of one fixed size in; the letterbox of
  :mod:`detdistill.runtime.letterbox` (bilinear resize, rounded half up to integers as OpenCV's uint8 resize does,
  constant padding), BGR->RGB, /255 and HWC->CHW happen in the graph.

Added nodes are named ``/nms/...`` and ``/pre/...``: outside the model's numbered layers, so ``quantize``
keeps them in float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..runtime.letterbox import letterbox
from ..runtime.postprocess import NMS_OUTPUTS
NMS_BOXES = "nms_boxes"  # (B,N,4) xywh: the boxes input of the NMS (TensorRT's EfficientNMS starts here)
FRAME_INPUT = "frames"
# xywh @ XYWH2XYXY -> xyxy (the same fp32 operations as the host's centre +- size / 2)
XYWH2XYXY = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]], np.float32)


@dataclass(frozen=True)
class LetterboxGeometry:
    """Static letterbox of one frame size: frame (h, w) -> resized (h, w), pad (top, left, bottom, right), input (h, w)."""

    frame: tuple[int, int]
    resized: tuple[int, int]
    pad: tuple[int, int, int, int]
    imgsz: tuple[int, int]


def letterbox_geometry(frame_hw: tuple[int, int], imgsz: tuple[int, int], mode: str = "val") -> LetterboxGeometry:
    """What :func:`detdistill.runtime.letterbox.letterbox` does to a frame of this size (measured on a blank frame)."""
    blank = np.full((*frame_hw, 3), 255, np.uint8)
    out, info = letterbox(blank, imgsz, mode=mode, pad_value=0)
    rows = np.nonzero(out[:, :, 0].max(1) == 255)[0]
    cols = np.nonzero(out[:, :, 0].max(0) == 255)[0]
    top, left = int(rows[0]), int(cols[0])
    nh, nw = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    if (left, top) != tuple(info.pad):
        raise RuntimeError(f"letterbox geometry of {frame_hw} -> {imgsz} is ambiguous")
    h, w = out.shape[:2]
    return LetterboxGeometry(tuple(frame_hw), (nh, nw), (top, left, h - nh - top, w - nw - left), (h, w))


def _const(name: str, value, dtype=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def add_graph_nms(proto: onnx.ModelProto, *, conf: float, iou: float, max_det: int,
                  boxes: str = "boxes", scores: str = "scores") -> onnx.ModelProto:
    """Append class-aware NMS and a fixed top-``max_det`` to the graph; its outputs become :data:`NMS_OUTPUTS`."""
    g = proto.graph
    n_anchors = next(int(o.type.tensor_type.shape.dim[2].dim_value) for o in g.output if o.name == scores)
    n_classes = next(int(o.type.tensor_type.shape.dim[1].dim_value) for o in g.output if o.name == scores)
    if max_det > n_anchors * n_classes:
        raise ValueError(f"max_det {max_det} is larger than the {n_anchors * n_classes} (anchor, class) pairs")
    g.initializer.extend([
        _const("/nms/max_per_class", [max_det], np.int64), _const("/nms/iou", [iou], np.float32),
        _const("/nms/conf", [conf], np.float32), _const("/nms/k", [max_det], np.int64),
        _const("/nms/flat", [0, -1], np.int64), _const("/nms/n", n_anchors, np.int64),
        _const("/nms/xyxy", XYWH2XYXY), _const("/nms/expand4", [1, 1, 4], np.int64),
        _const("/nms/zero", 0.0, np.float32),
    ])
    node = helper.make_node
    g.node.extend([
        node("Transpose", [boxes], [NMS_BOXES], "/nms/transpose", perm=[0, 2, 1]),
        node("NonMaxSuppression", [NMS_BOXES, scores, "/nms/max_per_class", "/nms/iou", "/nms/conf"],
             ["/nms/selected"], "/nms/nms", center_point_box=1),
        node("GatherND", [scores, "/nms/selected"], ["/nms/selected_scores"], "/nms/gather_scores"),
        node("Shape", [scores], ["/nms/scores_shape"], "/nms/shape"),
        node("ConstantOfShape", ["/nms/scores_shape"], ["/nms/zeros"], "/nms/zeros",
             value=numpy_helper.from_array(np.zeros(1, np.float32))),
        node("ScatterND", ["/nms/zeros", "/nms/selected", "/nms/selected_scores"], ["/nms/kept"], "/nms/scatter"),
        node("Reshape", ["/nms/kept", "/nms/flat"], ["/nms/kept_flat"], "/nms/reshape"),
        node("TopK", ["/nms/kept_flat", "/nms/k"], ["/nms/top_scores", "/nms/top_index"], "/nms/topk"),
        node("Div", ["/nms/top_index", "/nms/n"], ["/nms/class64"], "/nms/class"),
        node("Mod", ["/nms/top_index", "/nms/n"], ["/nms/anchor"], "/nms/anchor"),
        node("MatMul", [NMS_BOXES, "/nms/xyxy"], ["/nms/boxes_xyxy"], "/nms/to_xyxy"),
        node("Unsqueeze", ["/nms/anchor", "/nms/last"], ["/nms/anchor3"], "/nms/unsqueeze_anchor"),
        node("Expand", ["/nms/anchor3", "/nms/expand4"], ["/nms/anchor4"], "/nms/expand_anchor"),
        node("GatherElements", ["/nms/boxes_xyxy", "/nms/anchor4"], ["/nms/top_boxes"], "/nms/gather_boxes", axis=1),
        node("Greater", ["/nms/top_scores", "/nms/zero"], ["/nms/valid"], "/nms/valid"),
        node("Cast", ["/nms/valid"], ["/nms/valid_f"], "/nms/valid_f", to=TensorProto.FLOAT),
        node("Cast", ["/nms/valid"], ["/nms/valid_i"], "/nms/valid_i", to=TensorProto.INT32),
        node("Unsqueeze", ["/nms/valid_f", "/nms/last"], ["/nms/valid_f3"], "/nms/unsqueeze_valid"),
        node("Mul", ["/nms/top_boxes", "/nms/valid_f3"], [NMS_OUTPUTS[1]], "/nms/mask_boxes"),
        node("Mul", ["/nms/top_scores", "/nms/valid_f"], [NMS_OUTPUTS[2]], "/nms/mask_scores"),
        node("Cast", ["/nms/class64"], ["/nms/class32"], "/nms/class32", to=TensorProto.INT32),
        node("Mul", ["/nms/class32", "/nms/valid_i"], [NMS_OUTPUTS[3]], "/nms/mask_classes"),
        node("ReduceSum", ["/nms/valid_i", "/nms/axis1"], [NMS_OUTPUTS[0]], "/nms/count", keepdims=1),
    ])
    g.initializer.extend([_const("/nms/last", [-1], np.int64), _const("/nms/axis1", [1], np.int64)])
    batch = g.output[0].type.tensor_type.shape.dim[0]
    b = batch.dim_param or batch.dim_value
    g.value_info.extend([o for o in g.output if o.name in (boxes, scores)])  # keep their shapes on record
    g.value_info.append(helper.make_tensor_value_info(NMS_BOXES, TensorProto.FLOAT, [b, n_anchors, 4]))
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info(NMS_OUTPUTS[0], TensorProto.INT32, [b, 1]),
        helper.make_tensor_value_info(NMS_OUTPUTS[1], TensorProto.FLOAT, [b, max_det, 4]),
        helper.make_tensor_value_info(NMS_OUTPUTS[2], TensorProto.FLOAT, [b, max_det]),
        helper.make_tensor_value_info(NMS_OUTPUTS[3], TensorProto.INT32, [b, max_det]),
    ])
    return proto


def add_graph_preprocess(proto: onnx.ModelProto, geometry: LetterboxGeometry, *, pad_value: int = 114,
                         images: str = "images") -> onnx.ModelProto:
    """Replace the float NCHW input ``images`` by a uint8 (B,H,W,3) BGR frame input, letterboxed in the graph."""
    g = proto.graph
    old = next(i for i in g.input if i.name == images)
    batch = old.type.tensor_type.shape.dim[0]
    b = batch.dim_param or batch.dim_value
    (fh, fw), (nh, nw) = geometry.frame, geometry.resized
    top, left, bottom, right = geometry.pad
    node = helper.make_node
    nodes = [
        node("Cast", [FRAME_INPUT], ["/pre/float"], "/pre/cast", to=TensorProto.FLOAT),
        node("Transpose", ["/pre/float"], ["/pre/nchw"], "/pre/transpose", perm=[0, 3, 1, 2]),
    ]
    inits = [_const("/pre/pads", [0, 0, top, left, 0, 0, bottom, right], np.int64),
             _const("/pre/pad_value", float(pad_value), np.float32), _const("/pre/rgb", [2, 1, 0], np.int64),
             _const("/pre/255", 255.0, np.float32)]
    last = "/pre/nchw"
    if (nh, nw) != (fh, fw):
        inits += [_const("/pre/hw", [nh, nw], np.int64), _const("/pre/nc_start", [0], np.int64),
                  _const("/pre/nc_end", [2], np.int64), _const("/pre/lo", 0.0, np.float32),
                  _const("/pre/hi", 255.0, np.float32), _const("/pre/half", 0.5, np.float32)]
        nodes += [
            node("Shape", [last], ["/pre/shape"], "/pre/shape"),
            node("Slice", ["/pre/shape", "/pre/nc_start", "/pre/nc_end"], ["/pre/nc"], "/pre/nc"),
            node("Concat", ["/pre/nc", "/pre/hw"], ["/pre/sizes"], "/pre/sizes", axis=0),
            node("Resize", [last, "", "", "/pre/sizes"], ["/pre/resized"], "/pre/resize", mode="linear",
                 coordinate_transformation_mode="half_pixel"),
            node("Add", ["/pre/resized", "/pre/half"], ["/pre/shifted"], "/pre/add_half"),
            node("Floor", ["/pre/shifted"], ["/pre/rounded"], "/pre/round"),  # half up, as OpenCV rounds
            node("Clip", ["/pre/rounded", "/pre/lo", "/pre/hi"], ["/pre/clipped"], "/pre/clip"),
        ]
        last = "/pre/clipped"
    if any(geometry.pad):
        nodes.append(node("Pad", [last, "/pre/pads", "/pre/pad_value"], ["/pre/padded"], "/pre/pad", mode="constant"))
        last = "/pre/padded"
    nodes += [node("Gather", [last, "/pre/rgb"], ["/pre/rgb_image"], "/pre/bgr2rgb", axis=1),
              node("Div", ["/pre/rgb_image", "/pre/255"], [images], "/pre/scale")]
    rest = list(g.node)
    del g.node[:]
    g.node.extend(nodes + rest)
    g.initializer.extend(inits)
    g.input.remove(old)
    g.input.insert(0, helper.make_tensor_value_info(FRAME_INPUT, TensorProto.UINT8, [b, fh, fw, 3]))
    return proto
