"""Student ``.pt`` -> ONNX with separate ``boxes`` / ``scores`` outputs, metadata and a parity check.

The only module of detdistill.export that imports torch and ultralytics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .. import atomic
from ..data.images import read_bgr
from ..hashing import file_sha256
from ..models import load_detection_checkpoint, trained_imgsz
from ..runtime.backends.onnxruntime import OrtBackend
from ..runtime.letterbox import preprocess
from .graph_tail import FRAME_INPUT, NMS_BOXES, add_graph_nms, add_graph_preprocess, letterbox_geometry
from .outputs import checked_output
from .qdq import has_qdq
from .wrapper import ExportWrapper, input_size

INPUT_NAME = "images"
FAKE_QUANT_CONF = 0.25  # parity of a fake-quantized (QAT/QAD) model: reported on these anchors, see check_parity
OUTPUT_NAMES = ("boxes", "scores")
MIN_OPSET, TAIL_MIN_OPSET, MAX_OPSET = 11, 13, 20  # torch's TorchScript exporter stops at 20; tails use opset 13


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond tolerance."""


@dataclass
class ParityReport:
    """Largest absolute differences ONNX vs PyTorch over the checked images."""

    images: int
    max_box_diff: float  # pixels
    max_score_diff: float
    statistic: str = "max"  # "max" over every output; "mean on confident anchors" for a fake-quantized model
    compared: int | None = None  # images with anchors to compare (a fake-quantized model's confident ones); None: all

    def __str__(self) -> str:
        if self.compared == 0:
            return (f"parity on {self.images} images ({self.statistic}): nothing compared, no anchor scored above "
                    f"{FAKE_QUANT_CONF} in PyTorch (an undertrained model?); compare the accuracy of the .pt and the "
                    ".onnx with detdistill eval")
        return (f"parity on {self.images} images ({self.statistic}): |boxes| diff {self.max_box_diff:.4g} px, "
                f"|scores| diff {self.max_score_diff:.4g}")


def _head_prefix(proto, head) -> str:
    """Node-name prefix of the Detect head in the exported graph, e.g. ``/inner/model.22/``."""
    key = f"/model.{getattr(head, 'i', 22)}/"
    for node in proto.graph.node:
        if key in node.name:
            return node.name[: node.name.index(key) + len(key)]
    raise RuntimeError(f"could not find the Detect head ({key}) in the exported graph")


def _metadata(model, weights: Path, imgsz: tuple[int, int], head_prefix: str, batch: int, dynamic: bool) -> dict:
    names = {int(k): str(v) for k, v in model.names.items()}
    return {
        "producer": "detdistill",
        "task": "detect",
        "names": json.dumps(names),
        "imgsz": json.dumps(list(imgsz)),
        "stride": str(int(max(model.stride))),
        "batch": str(-1 if dynamic else batch),
        "preprocess": json.dumps({"letterbox": "val", "pad_value": 114, "scale": 1 / 255, "channels": "RGB",
                                  "layout": "NCHW"}),
        "outputs": json.dumps({"boxes": "xywh pixels (B,4,N)", "scores": "class probabilities (B,nc,N)"}),
        "postprocess": "host_nms",
        "head": head_prefix,
        "source": weights.name,
        "source_sha256": file_sha256(weights),
    }


def _add_tails(proto, meta: dict, *, nms_free: bool, nms: dict | None, frame: tuple[int, int] | None,
               imgsz: tuple[int, int]):
    """Write the NMS-free / in-graph NMS / in-graph preprocessing variants into ``proto`` and ``meta``."""
    if nms_free:
        meta["postprocess"] = "none"
        meta["outputs"] = json.dumps({"boxes": "xywh pixels (B,4,N), one-to-one head",
                                      "scores": "class probabilities (B,nc,N), one-to-one head: top-k, no NMS"})
    if nms is not None:
        proto = add_graph_nms(proto, conf=nms["conf"], iou=nms["iou"], max_det=nms["max_det"])
        meta["postprocess"] = "graph_nms"
        meta["nms"] = json.dumps({**nms, "class_aware": True, "multi_label": True, "boxes": NMS_BOXES,
                                  "scores": OUTPUT_NAMES[1]})
        meta["outputs"] = json.dumps({"num_dets": "int32 (B,1)", "det_boxes": "xyxy pixels (B,K,4)",
                                      "det_scores": "(B,K)", "det_classes": "int32 (B,K)"})
    if frame is not None:
        geo = letterbox_geometry(frame, imgsz)
        proto = add_graph_preprocess(proto, geo, pad_value=114, images=INPUT_NAME)
        pre = json.loads(meta["preprocess"])
        meta["preprocess"] = json.dumps({**pre, "in_graph": True, "frame": list(frame), "input": FRAME_INPUT,
                                         "input_format": "uint8 (B,H,W,3) BGR", "resized": list(geo.resized),
                                         "pad": list(geo.pad)})
    return proto


def parse_frame(text: str) -> tuple[int, int]:
    """``"1280x720"`` (width x height, as cameras name it) -> ``(720, 1280)`` (h, w)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--frame must be WIDTHxHEIGHT like 1280x720, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"--frame must be positive, got {text!r}")
    return h, w


def check_opset(opset: int, tails: str | None, qat: bool = False) -> None:
    """Raise ValueError unless torch's ONNX exporter, the graph's tail (``tails`` names what adds one: --nms,
    --frame, an NMS-free head's ranking; None for none) and a quantization-aware model (``qat``) support ``opset``."""
    low = TAIL_MIN_OPSET if tails or qat else MIN_OPSET
    if low <= opset <= MAX_OPSET:
        return
    if qat and opset < low:  # per-channel QuantizeLinear (its axis) came with opset 13
        raise ValueError(f"--opset {opset} is not supported for a quantization-aware (--int8) model: its per-channel "
                         f"INT8 weights need opset {low}-{MAX_OPSET}; 17 (the default) works on TensorRT 8.5 and newer")
    why = f" ({tails} builds its part of the graph with opset-13 operators)" if tails else ""
    raise ValueError(f"--opset {opset} is not supported: use {low}-{MAX_OPSET}{why}; 17 (the default) works on "
                     "TensorRT 8.5 and newer")


def export_onnx(
    weights: str | Path,
    output: str | Path | None = None,
    *,
    imgsz: int | tuple[int, int] | None = None,
    batch: int = 1,
    dynamic: bool = False,
    opset: int = 17,
    simplify: bool = True,
    parity_images: list[str | Path] | None = None,
    parity_atol: tuple[float, float] = (0.05, 1e-3),
    nms: bool = False,
    max_det: int = 300,
    nms_conf: float = 0.001,
    nms_iou: float = 0.7,
    frame: tuple[int, int] | None = None,
    one2one: bool = True,
) -> Path:
    """Export ``weights`` to ONNX and (with ``parity_images``) check ONNX Runtime against PyTorch.

    Args:
        weights: ultralytics detection ``.pt``.
        output: ``.onnx`` path (default: beside the weights).
        imgsz: square size or ``(h, w)``, multiples of the stride (default: the size it was trained at, else
            640, as ultralytics' export takes it). batch: static batch size.
        dynamic: make the batch dimension dynamic (input size stays static).
        parity_images: real images to compare raw outputs on; raises :class:`ParityError`
            when boxes differ by more than ``parity_atol[0]`` pixels or scores by more than ``parity_atol[1]``.
        nms: decode and class-aware NMS in the graph (``nms_conf``, ``nms_iou``), fixed top-``max_det`` outputs.
        frame: ``(h, w)`` of the camera frames: the input becomes that uint8 BGR frame, letterboxed in the graph.
        one2one: export a YOLOv10 / YOLO26 head through its NMS-free one-to-one branch (``False``: one-to-many).
    The network itself is checked for parity before the in-graph pre/post-processing is added.
    """
    import torch  # lazy: torch (only exporting needs it, not the ONNX helpers here)
    from ultralytics.utils.torch_utils import is_qat

    weights = Path(weights)
    model, ckpt = load_detection_checkpoint(weights, role="weights")
    hw = input_size(model, imgsz or trained_imgsz(ckpt))
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if nms and not (0 <= nms_conf <= 1 and 0 <= nms_iou <= 1 and max_det >= 1):
        raise ValueError(f"NMS needs conf and iou in [0, 1] and max_det >= 1, got {nms_conf}, {nms_iou}, {max_det}")
    output = checked_output(weights, output or weights.with_suffix(".onnx"), ".onnx")
    atomic.check_writable(output)  # before the export: a mistyped -o loses no work
    wrapper, head = ExportWrapper.build(model, dynamic_shape=False, one2one=one2one)
    if nms and wrapper.nms_free:
        raise ValueError(f"{weights.name} has an NMS-free (one-to-one) head: it needs no NMS, drop --nms (its "
                         "outputs are ranked by score on the host), or add --one2many to export its one-to-many "
                         "branch with NMS")
    tails = "--nms" if nms else "--frame" if frame is not None else \
        "the NMS-free head's ranking" if wrapper.nms_free else None  # what adds a tail to the graph, if anything
    check_opset(opset, tails, qat=is_qat(model))
    core = output.with_name(output.stem + ".core.onnx") if tails else output
    x = torch.zeros(batch, 3, *hw)
    with torch.no_grad():
        wrapper(x)  # builds anchors for this input size
        dyn = {n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic else None
        torch.onnx.export(wrapper, x, str(core), opset_version=opset, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=dyn, dynamo=False)
    proto = onnx.load(str(core))
    if simplify:
        import onnxslim  # lazy: onnxslim (only --simplify needs it)

        proto = onnxslim.slim(proto)
    onnx.checker.check_model(proto)
    meta = _metadata(model, weights, hw, _head_prefix(proto, head), batch, dynamic)
    if has_qdq(proto):  # a quantization-aware (QAD/QAT) model
        # ModelOpt's INT8: symmetric int8 weights and activations, the explicit form TensorRT builds
        meta["quantization"] = json.dumps({"target": "tensorrt", "scheme": "s8s8", "method": "qad"})
    _write(proto, meta, core)
    try:
        if parity_images:
            report = check_parity(weights, core, parity_images, atol=parity_atol, _model=wrapper)
            print(report)
        if tails:
            settings = {"conf": float(nms_conf), "iou": float(nms_iou), "max_det": int(max_det)} if nms else None
            proto = _add_tails(proto, meta, nms_free=wrapper.nms_free, nms=settings, frame=frame, imgsz=hw)
            onnx.checker.check_model(proto)
            _write(proto, meta, output)
    finally:
        if tails:
            core.unlink(missing_ok=True)
    return output


def _write(proto, meta: dict, path: Path) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))


def check_parity(
    weights: str | Path,
    onnx_path: str | Path,
    images: list[str | Path],
    *,
    atol: tuple[float, float] = (0.05, 1e-3),
    _model=None,
) -> ParityReport:
    """Compare raw ``boxes``/``scores`` of ONNX Runtime (CPU) and PyTorch on real images, through the runtime letterbox.

    A quantization-aware (QAT/QAD) model's Q/DQ graph runs simulated (Q/DQ as float operations). It is not
    bit-comparable with the fake-quantized PyTorch forward: on confident anchors (PyTorch score above
    ``FAKE_QUANT_CONF``) boxes were measured 0.2-1.8 px apart on average at 160-320 px. So for such a model
    the mean differences on those anchors are reported, not enforced; its accuracy is what to compare
    (``detdistill eval`` of the .pt and of the .onnx).
    """
    import torch  # lazy: torch (only exporting needs it, not the ONNX helpers here)

    if not images:
        raise ValueError("parity check needs at least one image")
    fake_quant = has_qdq(onnx.load(str(onnx_path)))
    ort = OrtBackend(onnx_path, device="cpu", int8_kernels=not fake_quant)
    model = _model or ExportWrapper.build(load_detection_checkpoint(weights, role="weights")[0], dynamic_shape=False)[0]
    batch = ort.input_shape[0] if ort.input_shape[0] > 0 else 1
    model.eval()
    box_d = score_d = 0.0
    compared = 0
    reduce = np.mean if fake_quant else np.max
    for path in images:
        x, _ = preprocess(read_bgr(path), ort.info.imgsz)
        x = np.repeat(x, batch, 0)
        ob, os_ = ort.infer(x)
        with torch.no_grad():
            tb, ts = (t.numpy() for t in model(torch.from_numpy(x)))
        keep = ts.max(1, keepdims=True) > FAKE_QUANT_CONF if fake_quant else np.ones_like(ts[:, :1], bool)
        if keep.any():
            compared += 1
            box_d = max(box_d, float(reduce(np.abs(ob - tb)[np.broadcast_to(keep, ob.shape)])))
            score_d = max(score_d, float(reduce(np.abs(os_ - ts)[np.broadcast_to(keep, ts.shape)])))
    report = ParityReport(len(images), box_d, score_d,
                          "fake-quantized model: mean on confident anchors, reported only" if fake_quant else "max",
                          compared if fake_quant else None)
    if not fake_quant and (box_d > atol[0] or score_d > atol[1]):
        raise ParityError(f"ONNX export of {weights} does not match PyTorch: {report} "
                          f"(tolerance {atol[0]} px, {atol[1]}); try another --opset or --no-simplify")
    return report


def default_parity_images() -> list[Path]:
    """Two real photos shipped with ultralytics (bus.jpg, zidane.jpg)."""
    from ultralytics.utils import ASSETS  # lazy: ultralytics (as torch above)

    return sorted(Path(ASSETS).glob("*.jpg"))[:2]
