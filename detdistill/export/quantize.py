"""INT8 Q/DQ quantization of a detdistill ONNX, calibrated on the user's images through the runtime letterbox.

Two targets (calibration ranges are cached per model / target / images / method / size: the targets calibrate
different tensors):

* ``tensorrt``: symmetric int8 activations and per-channel symmetric int8 weights on convolutions
  only, the form TensorRT 8.6-11 consumes (explicit quantization, strongly typed on TRT 11). Q/DQ pairs sit
  on each convolution's inputs and weights, not on its output: one rounding per layer, where TensorRT fuses
  the convolution, its activation and the next layer's quantization, and the placement ModelOpt's QAT/QAD
  exports use (quantizing the outputs too, ONNX Runtime's default, cost 3.1-5.6 points on coco-mini's test
  half under each of three calibration sets; docs/benchmarks.md);
* ``cpu``: every quantizable op (Conv, Sigmoid, Mul, Add, Concat, MaxPool, Resize...) with uint8
  activations, which ONNX Runtime CPU fuses into integer kernels end to end (fast on x86/ARM). Its weight
  scheme (``CPU_SCHEMES``) decides whether it holds on every CPU: x86 CPUs without VNNI multiply uint8 by
  int8 with ``vpmaddubsw``, which saturates at 16 bits when two full-range products add up; 7-bit weights
  (``u8s7``, the default) or uint8 weights (``u8u8``) never reach that limit.

The Detect head's output layers (``head-outputs``: last 1x1 convs, DFL, box decode) or the whole head
(``head``) stay in float. With ``max_drop`` the other layers are ranked by sensitivity and the fewest
most sensitive ones are kept in float until the mAP50-95 drop on validation data fits the budget.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from .. import atomic
from ..dependencies import MissingDependencyError
from ..file_checks import require_present
from ..models import is_int8_finetuned
from ..runtime.model_file import EXPORT_ONE, is_pytorch_checkpoint, require_nonempty
from ..runtime.metadata import ModelInfo
from ..data.dataset import load_dataset
from ..data.image_lists import list_images
from .calibration import CALIB_CHUNK, CalibrationReader, calibration_cache_path, usable_calibration_images
from .compare import paired_gain
from .evaluate import EvalResult, OtherClassesWarning, evaluate
from .outputs import checked_output
from .sensitivity import SENSITIVITY_IMAGES, cached_ranking, rank_sensitivity, sensitivity_cache_path

METHODS = ("minmax", "entropy", "percentile")
TARGETS = ("tensorrt", "cpu")
# Weight schemes of the cpu target: activations x weights. u8s8 saturates on x86 without VNNI (see
# detdistill.runtime.cpu); u8s7 (int8 weights in [-64, 63], "reduce_range") and u8u8 do not.
CPU_SCHEMES = ("u8s7", "u8u8", "u8s8")
DEFAULT_CPU_SCHEME = "u8s7"
KEEP_FLOAT = ("head-outputs", "head")
HEAD_INNER = re.compile(r"/cv[23]\.\d+/cv[23]\.\d+\.[01]/")  # the head's 3x3 conv blocks (quantizable)


@dataclass
class QuantizeResult:
    """Where the INT8 model went and what stayed in float."""

    path: Path
    target: str
    float_layers: list[str] = field(default_factory=list)
    fp32_map: float | None = None
    int8_map: float | None = None
    sensitivity: list[tuple[str, float]] = field(default_factory=list)
    within_budget: bool = True  # False: max_drop was not met and the best attempt was kept (strict=False)
    scheme: str = ""
    notes: list[str] = field(default_factory=list)  # warnings for the user (skipped images, few images)
    drop_interval: tuple[float, float] | None = None  # max_drop: 95% bootstrap interval of the drop, budget images
    budget_images: int = 0  # max_drop: how many images the drop was measured on

    @property
    def drop(self) -> float | None:
        return None if self.fp32_map is None or self.int8_map is None else self.fp32_map - self.int8_map

    def check_interval(self, fp32_records: list, int8_records: list, max_drop: float) -> None:
        """Bootstrap the drop over the budget images (by photo) and note when they cannot rule out a drop above
        ``max_drop``: a budget met by the mean on a few dozen images may be missed on the next images."""
        gain = paired_gain([fp32_records], [int8_records])
        self.drop_interval, self.budget_images = (gain.low, gain.high), len(fp32_records)
        if gain.high > max_drop:
            self.notes.append(
                f"on the {len(fp32_records)} budget images the INT8 drop is {100 * gain.diff:.1f} points, 95% "
                f"interval [{100 * gain.low:.1f}, {100 * gain.high:.1f}]: they cannot rule out a drop above the "
                f"budget ({100 * max_drop:g} points, max_drop={max_drop:g}); score both files on more held-out "
                "images of your domain (`detdistill eval`), or measure the budget on more images")


def _ort_quant():
    try:
        from onnxruntime import quantization as q  # lazy: onnxruntime (missing, it says what to install)
    except ImportError as e:  # pragma: no cover
        raise MissingDependencyError("INT8 quantization needs onnxruntime: pip install 'detdistill[export]'") from e
    return q


def _read_info(proto: onnx.ModelProto) -> tuple[ModelInfo, str, str]:
    meta = {p.key: p.value for p in proto.metadata_props}
    if "head" not in meta:
        raise ValueError("this ONNX has no detdistill metadata ('head'); export it with `detdistill export` first")
    info = ModelInfo.from_mapping(meta)
    return info, meta["head"], proto.graph.input[0].name


def layer_of(node_name: str) -> str | None:
    """The model layer a node belongs to (``model.7``), ``None`` for nodes outside the numbered layers."""
    m = re.search(r"/model\.(\d+)/", node_name)
    return f"model.{m.group(1)}" if m else None


def head_float_nodes(proto: onnx.ModelProto, head_prefix: str, keep_float: str) -> list[str]:
    """Nodes of the head (and after it) that stay in float."""
    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"keep_float must be one of {KEEP_FLOAT}, got {keep_float!r}")
    head_layer = layer_of(head_prefix)
    out = []
    for n in proto.graph.node:
        layer = layer_of(n.name)
        in_head = layer == head_layer or layer is None
        if in_head and (keep_float == "head" or not HEAD_INNER.search(n.name)):
            out.append(n.name)
    return out


def layer_nodes(proto: onnx.ModelProto, head_prefix: str) -> dict[str, list[str]]:
    """Quantizable nodes grouped by layer (backbone/neck layers, plus ``head-convs`` for the head's conv blocks)."""
    head_layer = layer_of(head_prefix)
    groups: dict[str, list[str]] = {}
    for n in proto.graph.node:
        layer = layer_of(n.name)
        if layer is None:
            continue
        if layer == head_layer:
            if not HEAD_INNER.search(n.name):
                continue
            layer = "head-convs"
        groups.setdefault(layer, []).append(n.name)
    return groups


def _quantize_once(src: Path, out: Path, reader: CalibrationReader | None, *, target: str, scheme: str, method: str,
                   percentile: float, per_channel: bool, exclude: Sequence[str], cache: Path,
                   conv_outputs: bool = False) -> None:
    q = _ort_quant()
    cm = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
          "percentile": q.CalibrationMethod.Percentile}[method]
    extra = {"WeightSymmetric": True}
    if reader is not None and len(reader) > CALIB_CHUNK:
        extra["CalibStridedMinMax"] = CALIB_CHUNK  # calibrate in chunks: bounded memory
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    weight = q.QuantType.QInt8
    if target == "tensorrt":
        act, ops = q.QuantType.QInt8, ["Conv"]
        extra["ActivationSymmetric"] = True
        if not conv_outputs:
            extra["OpTypesToExcludeOutputQuantization"] = ["Conv"]  # Q/DQ on conv inputs only (module docstring)
    else:
        act, ops = q.QuantType.QUInt8, None
        if scheme == "u8u8":
            weight, extra["WeightSymmetric"] = q.QuantType.QUInt8, False
    root = logging.getLogger()
    root.addFilter(_no_preprocess_advice)
    try:  # its calibrators print their settings ("Number of quantized bins : 128"): not detdistill's output
        with contextlib.redirect_stdout(io.StringIO()):
            q.quantize_static(str(src), str(out), reader, quant_format=q.QuantFormat.QDQ, op_types_to_quantize=ops,
                              per_channel=per_channel, reduce_range=scheme == "u8s7", activation_type=act,
                              weight_type=weight, nodes_to_exclude=list(exclude), calibrate_method=cm,
                              extra_options=extra, calibration_cache_path=str(cache))
    finally:
        root.removeFilter(_no_preprocess_advice)


def _no_preprocess_advice(record: logging.LogRecord) -> bool:
    """Drop ONNX Runtime's advice to run its pre-processing first, printed on every call: detdistill's export is
    already shape-inferred and simplified, and calibration letterboxes the images itself."""
    return "pre-processing before quantization" not in str(record.msg)


def _stamp(out: Path, src_meta: dict[str, str], quant: dict) -> None:
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    for k, v in {**src_meta, "quantization": json.dumps(quant)}.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(out))


def checkpoint_to_quantize(model: Path) -> str:
    """What to do with a ``.pt`` given to ``quantize``: export it first, or, for an INT8 (``--int8``) checkpoint,
    export it and stop there (its Q/DQ ONNX carries the scales it learned)."""
    fix = f"export it first with `detdistill export {model}`, then quantize the .onnx"
    try:
        import torch  # lazy: torch (only this error reads the checkpoint)

        ckpt = torch.load(model, map_location="cpu", weights_only=False)
    except Exception:  # no torch here, or not a loadable checkpoint: the plain advice
        return f"{model} is a PyTorch checkpoint, and quantize takes an FP32 ONNX: {fix}"
    if isinstance(ckpt, dict) and is_int8_finetuned(ckpt):
        return (f"{model} is an INT8 (quantization-aware, --int8) checkpoint: `detdistill export {model}` writes its "
                "INT8 Q/DQ ONNX with the scales it learned; there is nothing to quantize")
    return f"{model} is a PyTorch checkpoint, and quantize takes an FP32 ONNX: {fix}"


def quantize_onnx(
    onnx_path: str | Path,
    calib: str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    *,
    target: str = "cpu",
    scheme: str | None = None,
    method: str = "minmax",
    percentile: float = 99.999,
    num_images: int = 500,
    per_channel: bool = True,
    keep_float: str = "head-outputs",
    float_layers: Sequence[str] = (),
    max_drop: float | None = None,
    val_data: str | Path | None = None,
    val_limit: int | None = None,
    val_split: str = "val",
    max_float_layers: int = 8,
    cache_dir: str | Path | None = None,
    batch: int = 1,
    strict: bool = True,
    conv_outputs: bool = False,
) -> QuantizeResult:
    """Quantize ``onnx_path`` to INT8 Q/DQ.

    Args:
        calib: calibration images (folder, image list, data YAML -> its train split, or a list of paths);
            500-1000 images of the deployment domain are recommended.
        target: ``tensorrt`` (symmetric int8, convs only) or ``cpu`` (all ops, fast on ONNX Runtime CPU).
        scheme: the cpu target's weight scheme (``CPU_SCHEMES``, default ``u8s7``: accurate on every CPU);
            the tensorrt target is always ``s8s8`` (symmetric int8, int32 accumulation in TensorRT).
        method: ``minmax``, ``entropy`` or ``percentile`` (``percentile`` sets the clip).
        keep_float: ``head-outputs`` or ``head`` (whole Detect module) stays in float.
        float_layers: extra layers (``model.7``, ``head-convs``) to keep in float.
        max_drop: mAP50-95 budget (e.g. 0.01) on ``val_split`` of ``val_data`` (first ``val_limit`` images);
            the most sensitive layers are kept in float, at most ``max_float_layers``, until it fits.
        strict: when the budget cannot be met, raise (default) or keep the most accurate attempt and return
            it with ``within_budget=False`` (a pipeline reports it instead of stopping).
        conv_outputs: tensorrt target: also quantize each convolution's output (ONNX Runtime's default
            placement, kept to compare against; the default quantizes inputs and weights only).
    """
    src = Path(onnx_path)
    require_present(src, "ONNX model", EXPORT_ONE)
    if is_pytorch_checkpoint(src):
        raise ValueError(checkpoint_to_quantize(src))
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if method == "percentile" and not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], e.g. 99.999, got {percentile}")
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1 (500-1000 recommended), got {num_images}")
    if val_limit is not None and val_limit < 1:
        raise ValueError(f"val_limit must be at least 1 image (or left out to use the whole split), got {val_limit}")
    if conv_outputs and target != "tensorrt":
        raise ValueError("conv_outputs places the tensorrt target's Q/DQ; the cpu target quantizes every op's output")
    if target == "tensorrt":
        if scheme not in (None, "s8s8"):
            raise ValueError(f"the tensorrt target is always symmetric int8 (s8s8), got scheme {scheme!r}")
        scheme = "s8s8"
    elif scheme is None:
        scheme = DEFAULT_CPU_SCHEME
    elif scheme not in CPU_SCHEMES:
        raise ValueError(f"cpu scheme must be one of {CPU_SCHEMES}, got {scheme!r}")
    if max_drop is not None and val_data is None:
        raise ValueError("max_drop needs val_data: a data YAML whose val split measures the accuracy drop")
    if max_drop is not None:
        dataset = load_dataset(val_data)
        if val_split not in dataset.splits:
            raise ValueError(f"{val_data} has no '{val_split}' split to measure max_drop on (it has "
                             f"{', '.join(dataset.splits) or 'none'}); choose one of those, or another data YAML")
        dataset.images(val_split)  # a missing split folder fails here, before calibration
    out = checked_output(src, output or src.with_name(f"{src.stem}.int8-{target}.onnx"), ".onnx")
    atomic.check_writable(out)
    require_nonempty(src)
    proto = onnx.load(str(src))
    info, head_prefix, input_name = _read_info(proto)
    if info.frame is not None:
        raise ValueError(f"{src} takes uint8 camera frames (preprocessing in the graph); calibration feeds letterboxed "
                         "images: quantize the export without --frame (with --nms if wanted) instead")
    if info.quantization.get("method") == "qad":
        raise ValueError(f"{src} is already quantized: a quantization-aware (QAD) export carries its learned INT8 "
                         "scales; evaluate it or build its engine as it is")
    if any(p.key == "quantization" for p in proto.metadata_props):
        raise ValueError(f"{src} is already quantized; quantize the FP32 export instead")
    files = list(calib) if isinstance(calib, (list, tuple)) else list_images(calib, limit=num_images)
    files = [Path(f) for f in files][:num_images]
    if not files:
        raise ValueError("no calibration images: pass a folder / list / data YAML with images of your domain")
    files, notes = usable_calibration_images(files)
    n_batches = max(len(files) // batch, 1)  # whole batches only (one partial batch when fewer files than batch)
    if n_batches > CALIB_CHUNK:  # chunked calibration needs a whole number of chunks
        n_batches = n_batches // CALIB_CHUNK * CALIB_CHUNK
    files = files[: n_batches * batch]
    groups = layer_nodes(proto, head_prefix)
    unknown = [g for g in float_layers if g not in groups]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; choose from {', '.join(groups)}")
    cache_dir = Path(cache_dir) if cache_dir else out.parent
    cache = calibration_cache_path(src, files, f"{target}-{method}{percentile if method == 'percentile' else ''}"
                                   f"-b{batch}", cache_dir)
    reader = CalibrationReader(files, info, input_name, batch)
    base = head_float_nodes(proto, head_prefix, keep_float)
    src_meta = {p.key: p.value for p in proto.metadata_props}

    def build(layers: Sequence[str], dst: Path) -> None:
        exclude = base + [n for g in layers for n in groups[g]]
        reader.rewind()
        _quantize_once(src, dst, reader, target=target, scheme=scheme, method=method, percentile=percentile,
                       per_channel=per_channel, exclude=exclude, cache=cache, conv_outputs=conv_outputs)
        qdq = "conv inputs and outputs" if conv_outputs else "conv inputs"
        placement = {"qdq": qdq} if target == "tensorrt" else {}
        _stamp(dst, src_meta, {"target": target, "scheme": scheme, "method": method, "calib_images": len(files),
                               "keep_float": keep_float, "float_layers": list(layers), "per_channel": per_channel,
                               **placement})

    chosen = list(float_layers)
    build(chosen, out)
    result = QuantizeResult(out, target, chosen, scheme=scheme, notes=notes)
    if max_drop is None:
        return result

    def score(path: Path) -> EvalResult:
        with warnings.catch_warnings():  # the CLI words other classes of the budget images for --max-drop
            warnings.simplefilter("ignore", OtherClassesWarning)
            return evaluate(path, val_data, split=val_split, limit=val_limit, keep_records=True)

    fp32, first = score(src), score(out)
    result.fp32_map, result.int8_map = fp32.map50_95, first.map50_95
    if result.drop <= max_drop:
        result.check_interval(fp32.records, first.records, max_drop)
        return result
    probes, candidates = files[:SENSITIVITY_IMAGES], [g for g in groups if g not in chosen]
    ranking_cache = sensitivity_cache_path(cache, probes, {
        "scheme": scheme, "per_channel": per_channel, "keep_float": keep_float, "conv_outputs": conv_outputs,
        "fixed": chosen, "candidates": candidates})
    result.sensitivity = cached_ranking(ranking_cache, lambda: rank_sensitivity(src, probes, build, chosen, candidates,
                                                                                 info, input_name))
    trial_map = result.int8_map
    best_eval, best_layers = first, list(chosen)
    with tempfile.TemporaryDirectory() as tmp:
        trial, best = Path(tmp) / "trial.onnx", Path(tmp) / "best.onnx"
        for layer, _ in result.sensitivity[:max_float_layers]:
            chosen.append(layer)
            build(chosen, trial)
            trial_eval = score(trial)
            trial_map = trial_eval.map50_95
            if trial_map >= result.fp32_map - max_drop:
                trial.replace(out)
                result.float_layers, result.int8_map = list(chosen), trial_map
                result.check_interval(fp32.records, trial_eval.records, max_drop)
                return result
            if trial_map > best_eval.map50_95:
                best_eval, best_layers = trial_eval, list(chosen)
                shutil.copyfile(trial, best)
        if not strict:
            if best.exists():
                shutil.move(best, out)
            result.float_layers, result.int8_map, result.within_budget = best_layers, best_eval.map50_95, False
            result.check_interval(fp32.records, best_eval.records, max_drop)
            return result
    raise RuntimeError(f"could not meet max_drop={max_drop} with {max_float_layers} layers in float (drop still "
                       f"{result.fp32_map - trial_map:.4f}): raise --max-drop, use more calibration images, or "
                       "--keep-float head")
