"""TensorRT engine builder: FP32 / FP16 / INT8 from a detdistill ONNX, with a JSON sidecar.

Decisions (pure, unit-tested through :func:`plan_build`):

* TensorRT 8.5-10: FP16 / INT8 builder flags. INT8 from a Q/DQ ONNX (explicit) or, for a plain ONNX,
  implicit calibration with an entropy-2 or min-max calibrator whose cache is keyed by model, images
  and batch; the head's output layers are pinned to FP16/FP32.
* TensorRT 11+: strongly typed networks only. INT8 needs a Q/DQ ONNX (``detdistill quantize --target
  tensorrt``); the FP16/INT8 flags and calibrators no longer exist.

* An ONNX with NMS in its graph (``detdistill export --nms``) is built from its network up to the NMS inputs,
  followed by TensorRT's ``EfficientNMS_TRT`` plugin with the exported settings: fixed-shape outputs
  (``num_dets``, ``det_boxes``, ``det_scores``, ``det_classes``) and no data-dependent shapes. TensorRT would
  parse ONNX ``NonMaxSuppression`` into its ``INMSLayer``, whose data-dependent output shape TensorRT 10 runs
  markedly slower than 8.6 did (a known regression), and which still needs the scatter/top-k tail.

The ``trt`` argument of :func:`build_engine` is the seam: tests inject a fake module object.
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.utils import Extractor

from .. import atomic
from ..data.image_lists import list_images
from ..runtime.backends.cuda_mem import CudaMem
from ..runtime.backends.tensorrt import sidecar_path
from ..runtime.metadata import ModelInfo
from ..file_checks import require_present
from ..runtime.model_file import EXPORT_ONE
from ..runtime.postprocess import NMS_OUTPUTS
from ..hashing import file_sha256, files_key
from .calibration import CalibrationReader
from .outputs import checked_output
from .qdq import has_qdq
from .quantize import HEAD_INNER
from .platform_info import GpuInfo, detect_gpu, jetpack_for, read_l4t, tensorrt_install_hint

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATORS = ("entropy", "minmax")


class BuildError(RuntimeError):
    """The engine cannot be built as asked; the message says why and what to do."""


@dataclass
class BuildPlan:
    """What the builder will do for one (TensorRT version, model, request)."""

    trt_major: int
    flags: list[str] = field(default_factory=list)  # BuilderFlag names
    network_flags: list[str] = field(default_factory=list)  # NetworkDefinitionCreationFlag names
    calibrator: str | None = None  # entropy | minmax for implicit INT8
    pin_head: bool = False  # set head layers to higher precision
    dla_core: int | None = None


def _version_tuple(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


def plan_build(trt_version: str, precision: str, qdq: bool, *, calibrator: str = "entropy",
               dla_core: int | None = None, is_jetson: bool = False, num_dla: int = 0) -> BuildPlan:
    """Decide flags, calibration and DLA use; raise :class:`BuildError` for impossible requests."""
    if precision not in PRECISIONS:
        raise BuildError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if calibrator not in CALIBRATORS:
        raise BuildError(f"calibrator must be one of {CALIBRATORS}, got {calibrator!r}")
    major, minor = _version_tuple(trt_version)
    if (major, minor) < (8, 5):
        raise BuildError(f"TensorRT {trt_version} is too old: detdistill needs 8.5+ (JetPack 5.1 or newer)")
    plan = BuildPlan(trt_major=major)
    if major >= 11:
        plan.network_flags.append("STRONGLY_TYPED")
        if precision == "int8" and not qdq:
            raise BuildError(
                f"TensorRT {trt_version} builds strongly typed networks only and has no INT8 calibrator: "
                "make a Q/DQ ONNX first with `detdistill quantize model.onnx --data <images> --target tensorrt`, "
                "then build that file")
        if precision == "fp16" and not qdq:
            raise BuildError(
                f"TensorRT {trt_version} has no FP16 builder flag (strongly typed): build --precision fp32, "
                "build a Q/DQ INT8 ONNX, or convert the ONNX to FP16 first (ModelOpt autocast)")
    else:
        if major < 10:
            plan.network_flags.append("EXPLICIT_BATCH")
        if precision in ("fp16", "int8"):
            plan.flags.append("FP16")
        if precision == "int8":
            plan.flags.append("INT8")
            if not qdq:
                plan.calibrator = calibrator
                plan.pin_head = True
                plan.flags.append("PREFER_PRECISION_CONSTRAINTS" if major >= 10 else "OBEY_PRECISION_CONSTRAINTS")
        elif qdq:
            raise BuildError("this ONNX has Q/DQ nodes (INT8): build it with --precision int8")
    if dla_core is not None:
        if not is_jetson:
            raise BuildError("DLA cores exist only on Jetson (Xavier / Orin); drop --dla")
        if dla_core < 0 or dla_core >= max(num_dla, 0) or num_dla == 0:
            raise BuildError(f"DLA core {dla_core} does not exist: this device has {num_dla} DLA core(s)")
        if precision == "fp32":
            raise BuildError("DLA runs FP16 or INT8 only: use --precision fp16 or int8 with --dla")
        plan.dla_core = dla_core
        plan.flags.append("GPU_FALLBACK")
    return plan


def calib_cache_file(onnx_path: Path, images: Sequence[Path], batch: int, kind: str, cache_dir: Path) -> Path:
    """Calibration cache name: stale caches (other weights, images, batch or calibrator) are never reused."""
    return cache_dir / f"{onnx_path.stem}.{file_sha256(onnx_path)[:12]}-{files_key(images)}-b{batch}-{kind}.cache"


def make_calibrator(trt: Any, kind: str, reader, batch: int, cache: Path, cuda) -> Any:
    """An ``IInt8EntropyCalibrator2`` / ``IInt8MinMaxCalibrator`` feeding letterboxed images (TensorRT < 11)."""
    base = trt.IInt8EntropyCalibrator2 if kind == "entropy" else trt.IInt8MinMaxCalibrator

    class _Calibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.ptr: int | None = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):  # noqa: ANN001
            x = reader.get_next()
            if x is None:
                return None
            arr = np.ascontiguousarray(next(iter(x.values())), dtype=np.float32)
            if self.ptr is None:
                self.ptr = cuda.malloc(arr.nbytes)
            cuda.htod(self.ptr, arr)
            cuda.synchronize()
            return [self.ptr]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(cache, bytes(data))

    return _Calibrator()


def build_engine(
    onnx_path: str | Path,
    output: str | Path | None = None,
    *,
    precision: str = "fp16",
    calib: str | Path | None = None,
    calibrator: str = "entropy",
    num_calib: int = 500,
    workspace_gb: float | None = None,
    dla_core: int | None = None,
    batch: tuple[int, int, int] | None = None,
    timing_cache: str | Path | None = None,
    trt: Any = None,
    gpu: GpuInfo | None = None,
    cuda: Any = None,
    l4t: str | None = None,
) -> Path:
    """Build a TensorRT engine from ``onnx_path`` and write ``<engine>.json`` next to it.

    Args:
        precision: fp32, fp16 or int8 (a Q/DQ ONNX builds as INT8 everywhere; a plain ONNX calibrates
            on ``calib`` images with ``calibrator`` on TensorRT < 11).
        workspace_gb: workspace memory pool limit. dla_core: Jetson DLA core (GPU fallback on).
        batch: ``(min, opt, max)`` for a dynamic-batch ONNX (default: the ONNX's static batch).
        timing_cache: file to load/save layer timings (faster rebuilds).
        trt, gpu, cuda, l4t: seams for tests (a fake ``tensorrt`` module, GPU, CUDA helper, L4T version).
    """
    onnx_path = Path(onnx_path)
    require_present(onnx_path, "ONNX model", EXPORT_ONE)
    try:  # before any work: the engine must not land on the ONNX (or anything but an engine path)
        out = checked_output(onnx_path, Path(output) if output else onnx_path.with_suffix(".engine"),
                             (".engine", ".plan"))
    except ValueError as e:
        raise BuildError(str(e)) from None
    l4t = l4t if l4t is not None else read_l4t()
    if trt is None:
        try:
            import tensorrt as trt  # lazy: tensorrt (missing, a BuildError with the install hint)
        except ImportError:
            raise BuildError(f"TensorRT is not installed. {tensorrt_install_hint(l4t)}") from None
    gpu = gpu or detect_gpu()
    if gpu is None:
        raise BuildError("no CUDA GPU found: TensorRT engines must be built on the GPU that will run them "
                         "(build on the Jetson itself; check nvidia-smi / tegrastats)")
    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_mapping(meta)
    qdq = has_qdq(proto)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan = plan_build(trt.__version__, precision, qdq, calibrator=calibrator, dla_core=dla_core,
                      is_jetson=l4t is not None, num_dla=int(getattr(builder, "num_DLA_cores", 0)))
    if plan.calibrator and calib is None:
        raise BuildError("INT8 from a plain ONNX needs calibration images: pass --calib <folder|data.yaml> "
                         "(500-1000 images), or build a Q/DQ ONNX from `detdistill quantize --target tensorrt`")
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    parser = trt.OnnxParser(network, logger)
    graph_nms = info.postprocess == "graph_nms"
    if info.frame is not None and plan.calibrator:
        raise BuildError("implicit INT8 calibration feeds letterboxed images, but this ONNX takes uint8 camera frames "
                         "(--frame): build --precision fp16, or calibrate the export without --frame")
    with tempfile.TemporaryDirectory() as tmp:
        parsed = pre_nms_onnx(proto, Path(tmp) / "pre_nms.onnx", info.nms) if graph_nms else onnx_path
        if not parser.parse_from_file(str(parsed)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    if graph_nms:
        add_efficient_nms(trt, network, logger, info.nms)
    config = builder.create_builder_config()
    if workspace_gb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core

    inp = network.get_input(0)
    shape = tuple(int(d) for d in inp.shape)
    dynamic = shape[0] < 0
    if dynamic or batch:
        if not dynamic:
            raise BuildError(f"{onnx_path} has a static batch {shape[0]}; re-export with --dynamic to use --batch")
        lo, opt, hi = batch or (1, 1, 1)
        if not 1 <= lo <= opt <= hi:
            raise BuildError(f"batch range must satisfy 1 <= min <= opt <= max, got {batch}")
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, (lo, *shape[1:]), (opt, *shape[1:]), (hi, *shape[1:]))
        config.add_optimization_profile(profile)
    calib_batch = (batch[1] if batch else 1) if dynamic else shape[0]

    cache_blob = None
    if timing_cache:
        tc = Path(timing_cache)
        cache_blob = config.create_timing_cache(tc.read_bytes() if tc.is_file() else b"")
        config.set_timing_cache(cache_blob, False)

    calib_files: list[Path] = []
    if plan.calibrator:
        calib_files = list_images(calib, limit=num_calib)
        cache = calib_cache_file(onnx_path, calib_files, calib_batch, plan.calibrator, onnx_path.parent)
        if cuda is None:
            cuda = CudaMem()
        reader = CalibrationReader(calib_files, info, inp.name, calib_batch)
        config.int8_calibrator = make_calibrator(trt, plan.calibrator, reader, calib_batch, cache, cuda)
        if dynamic:
            config.set_calibration_profile(config.get_calibration_profile() or profile)
    if plan.pin_head:
        _pin_head(trt, network, meta.get("head", "/model.22/"))

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT failed to build the engine (see its log above); try a larger --workspace, "
                         "--precision fp16, or drop --dla")
    atomic.write_bytes(out, bytes(serialized))
    if timing_cache and cache_blob is not None:
        atomic.write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    side = {
        "tensorrt": trt.__version__,
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "precision": precision,
        "int8_mode": ("qdq" if qdq else f"calibrated-{plan.calibrator}") if precision == "int8" else None,
        "strongly_typed": "STRONGLY_TYPED" in plan.network_flags,
        "dla_core": plan.dla_core,
        "batch": list(batch) if batch else [shape[0]] * 3,
        "imgsz": list(info.imgsz) if info.imgsz else list(shape[2:]),
        "names": {str(k): v for k, v in info.names.items()},
        "stride": info.stride,
        "preprocess": json.loads(meta.get("preprocess", "{}") or "{}"),
        "postprocess": info.postprocess,
        "nms": info.nms or None,
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": file_sha256(onnx_path),
        "calib_images": len(calib_files) or None,
        "l4t": l4t,
        "jetpack": jetpack_for(l4t),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "plan": asdict(plan),
    }
    atomic.write_text(sidecar_path(out), json.dumps(side, indent=2))
    return out


def _pin_head(trt: Any, network: Any, head_prefix: str) -> None:
    """Implicit INT8: keep the head's output layers (last convs, DFL, decode) in FP32."""
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if head_prefix in layer.name and not HEAD_INNER.search(layer.name):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)


def pre_nms_onnx(proto: onnx.ModelProto, dst: Path, nms: dict) -> Path:
    """The network of an ``export --nms`` ONNX up to its NMS inputs (``nms['boxes']`` (B,N,4) xywh, ``nms['scores']``)."""
    sub = Extractor(proto).extract_model([proto.graph.input[0].name], [nms["boxes"], nms["scores"]])
    sub.metadata_props.extend(proto.metadata_props)
    onnx.save(sub, str(dst))
    return dst


def add_efficient_nms(trt: Any, network: Any, logger: Any, nms: dict) -> None:
    """Replace the network's (boxes, scores) outputs by TensorRT's EfficientNMS_TRT plugin and its four outputs."""
    fix = ("install TensorRT's plugin library (libnvinfer-plugin10, part of JetPack's nvidia-tensorrt and of "
           "`pip install tensorrt`), or export without --nms and let the runtime run NMS on the host")
    if not trt.init_libnvinfer_plugins(logger, ""):
        raise BuildError(f"TensorRT {trt.__version__} could not load its plugin library (libnvinfer_plugin) that "
                         f"holds EfficientNMS_TRT, which this --nms model needs: {fix}")
    registry = trt.get_plugin_registry()
    find = getattr(registry, "get_creator", None) or registry.get_plugin_creator
    creator = find("EfficientNMS_TRT", "1", "")
    if creator is None:
        raise BuildError(f"TensorRT {trt.__version__} has no EfficientNMS_TRT plugin (version 1) in its registry, "
                         f"which this --nms model needs: {fix}")
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    boxes, scores = outputs[nms["boxes"]], outputs[nms["scores"]]
    to_bnc = network.add_shuffle(scores)  # (B, nc, N) -> (B, N, nc)
    to_bnc.second_transpose = (0, 2, 1)
    i32, f32 = trt.PluginFieldType.INT32, trt.PluginFieldType.FLOAT32
    fields = [("background_class", -1, i32), ("max_output_boxes", int(nms["max_det"]), i32),
              ("score_threshold", float(nms["conf"]), f32), ("iou_threshold", float(nms["iou"]), f32),
              ("score_activation", 0, i32), ("class_agnostic", 0, i32), ("box_coding", 1, i32)]  # 1: xywh in
    collection = trt.PluginFieldCollection([
        trt.PluginField(name, np.array([v], np.int32 if t is i32 else np.float32), t) for name, v, t in fields])
    plugin = creator.create_plugin("detdistill_efficient_nms", collection)
    layer = network.add_plugin_v2([boxes, to_bnc.get_output(0)], plugin)
    network.unmark_output(boxes)
    network.unmark_output(scores)
    for i, name in enumerate(NMS_OUTPUTS):  # num_detections, detection_boxes (xyxy), scores, classes
        out = layer.get_output(i)
        out.name = name
        network.mark_output(out)
