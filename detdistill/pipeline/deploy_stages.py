"""The deployment stages: ONNX of every checkpoint, INT8 ONNX of the final student, and TensorRT engines of it
where TensorRT is installed."""

from __future__ import annotations

from pathlib import Path

from .artifacts import Artifact, final_student
from .config import Int8Spec
from .context import StageContext, tensorrt_version
from .dataset_files import DataInput

BUDGET_IMAGES = 500  # train images on which export.int8.max_drop is checked


def export_all(ctx: StageContext, checkpoints: list[Artifact], data: Path) -> list[Artifact]:
    """ONNX of every checkpoint, then the INT8 ONNX and the engines of the final student."""
    from ..data.image_lists import list_images  # lazy: cv2, onnx (only this stage needs them)
    from ..export.onnx_export import export_onnx

    val_images = list_images(data, limit=4)
    folder = ctx.work / "artifacts"
    folder.mkdir(exist_ok=True)
    artifacts = []
    for pt in checkpoints:
        path = folder / f"{pt.file_stem}.onnx"
        ctx.stages.run(f"export {pt.model_name} to ONNX", {"pt": pt.path, "imgsz": pt.imgsz}, [path],  # runs now
                       lambda: str(export_onnx(pt.path, path, imgsz=pt.imgsz, parity_images=val_images)))
        artifacts.append(pt.exported(path))
    final = artifacts[checkpoints.index(final_student(checkpoints))]
    int8 = ctx.cfg.export.int8
    if int8 is not None:
        artifacts.append(quantize(ctx, final, data, int8))
    for precision in ctx.cfg.export.engines or []:
        engine = build_engine(ctx, final, data, precision)
        if engine is not None:
            artifacts.append(engine)
    return artifacts


def train_budget(data: str | Path, max_drop: float, limit: int = BUDGET_IMAGES) -> dict:
    """``quantize_onnx`` arguments that check ``max_drop`` on the first ``limit`` train images of ``data``
    (val stays held out for the report)."""
    return {"max_drop": max_drop, "val_data": str(data), "val_split": "train", "val_limit": limit}


def quantize(ctx: StageContext, onnx: Artifact, data: Path, int8: Int8Spec) -> Artifact:
    """Post-training INT8 of ``onnx`` as ``detdistill quantize`` makes it; an unmet ``max_drop`` becomes a note."""
    from ..export.quantize import quantize_onnx  # lazy: cv2, onnx (only this stage needs them)

    out = onnx.path.with_name(onnx.path.stem + "-int8.onnx")
    kwargs = {"target": int8.target, "method": int8.method, "num_images": int8.calib_images}
    if int8.max_drop is not None:
        limit = min(ctx.cfg.measure.eval_limit or BUDGET_IMAGES, BUDGET_IMAGES)
        kwargs.update(train_budget(data, int8.max_drop, limit))

    def run() -> dict:
        r = quantize_onnx(onnx.path, str(data), out, strict=False, **kwargs)
        return {"within_budget": r.within_budget, "drop": r.drop, "float_layers": r.float_layers, "notes": r.notes}

    key = {"onnx": onnx.path, "data": DataInput(data), **kwargs}
    if int8.target == "tensorrt":  # Q/DQ on conv inputs only: files quantized with conv outputs too are redone
        key["qdq"] = "conv inputs"
    result = ctx.stages.run("quantize to INT8", key, [out], run)
    for note in result.get("notes", []) if isinstance(result, dict) else []:  # few images, a wide interval
        ctx.note(f"INT8: {note}")
    if isinstance(result, dict) and not result["within_budget"]:  # the best attempt was kept: say so
        ctx.note(f"INT8 could not meet export.int8.max_drop={int8.max_drop}: the most accurate attempt "
                 f"(drop {result['drop']:.3f}, {len(result['float_layers'])} layers kept in float) was kept. "
                 "More calibration images, or a larger budget, may do better.")
    return onnx.exported(out, precision="int8", method="ptq", target=int8.target)


def build_engine(ctx: StageContext, onnx: Artifact, data: Path, precision: str) -> Artifact | None:
    """A TensorRT engine of ``onnx`` at ``precision`` (INT8 calibrated on ``data``); None without TensorRT."""
    name = f"build {precision} engine"
    if tensorrt_version() is None:
        ctx.stages.skip(name, "TensorRT is not installed here")
        ctx.note("TensorRT is not installed on this machine: the engine stages were skipped. Run the same "
                 "recipe on the Jetson (see deploy/jetson/README.md in detdistill's repository) to build and "
                 "measure them.")
        return None
    from ..export.tensorrt_build import build_engine as build  # lazy: cv2, onnx (only this stage needs them)

    out = onnx.path.with_name(f"{onnx.path.stem}-{precision}.engine")
    calib = str(data) if precision == "int8" else None
    ctx.stages.run(name, {"onnx": onnx.path, "precision": precision, "data": DataInput(data)}, [out],
                   lambda: str(build(onnx.path, out, precision=precision, calib=calib)))
    return onnx.exported(out, precision=precision, method="ptq" if precision == "int8" else None, target="tensorrt")
