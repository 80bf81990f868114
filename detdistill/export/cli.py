"""CLI verbs of the deploy chain: export, quantize, build, eval, bench (``register(app)`` adds them)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from ..cli_errors import fail, path_parser
from ..file_checks import require_present
from ..runtime.model_file import EXPORT_ONE, EmptyModelError, require_nonempty

IMAGES = "a folder of images, an image, a .txt list or a data YAML"
MODEL_SUFFIXES = (".onnx", ".engine", ".plan")


def _need_file(path: Path, what: str, suffixes: tuple[str, ...], hint: str) -> None:
    try:
        require_present(path, what, hint)
    except FileNotFoundError as e:
        fail(str(e))
    if suffixes and path.suffix.lower() not in suffixes:
        fail(f"{what} {path} should end in {' or '.join(suffixes)}. {hint}")
    if path.suffix.lower() in MODEL_SUFFIXES:
        try:
            require_nonempty(path)  # a 0-byte model: ONNX Runtime would only say "No graph was found"
        except EmptyModelError as e:
            fail(str(e))


def export(
    weights: Path = typer.Argument(..., help="Trained ultralytics detection checkpoint (.pt)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output .onnx (default: next to the weights)."),
    imgsz: Optional[int] = typer.Option(None, max=4096, help="Square input size, a multiple of 32 (default: the size "
                                        "it was trained at, else 640)."),
    batch: int = typer.Option(1, help="Static batch size."),
    dynamic: bool = typer.Option(False, help="Dynamic batch dimension (input size stays fixed)."),
    opset: int = typer.Option(17, help="ONNX opset (17 works on TensorRT 8.5+)."),
    simplify: bool = typer.Option(True, help="Simplify the graph with onnxslim."),
    parity: Optional[Path] = typer.Option(
        None, parser=path_parser("--parity", IMAGES), metavar="PATH",
        help="Folder/list of real images for the ONNX-vs-PyTorch parity check (default: 2 sample photos)."),
    nms: bool = typer.Option(
        False, help="Decode and class-aware NMS in the graph (ONNX NonMaxSuppression; EfficientNMS in `build`): "
        "fixed-shape outputs num_dets, det_boxes, det_scores, det_classes."),
    max_det: Optional[int] = typer.Option(None, help="--nms: boxes kept per image (the fixed top-k; default 300)."),
    nms_conf: Optional[float] = typer.Option(None, help="--nms: score threshold in the graph (default eval's 0.001; "
                                             "the runtime's --conf filters further)."),
    nms_iou: Optional[float] = typer.Option(None, help="--nms: IoU threshold in the graph (default 0.7)."),
    frame: Optional[str] = typer.Option(
        None, help="Camera frame size WIDTHxHEIGHT, e.g. 1280x720: the input becomes that uint8 BGR frame, with "
        "letterbox, BGR->RGB, /255 and HWC->CHW in the graph."),
    one2many: bool = typer.Option(
        False, "--one2many", help="YOLOv10 / YOLO26: export the one-to-many branch, decoded and NMSed (on the host, "
        "or in the graph with --nms), instead of the NMS-free one-to-one branch. ultralytics' validation during "
        "training scores this branch."),
) -> None:
    """Export a .pt to ONNX with separate boxes/scores outputs, metadata, and a parity check.

    A YOLOv10 / YOLO26 (NMS-free) head is exported through its one-to-one branch: no NMS anywhere
    (--one2many: its one-to-many branch, with NMS).

    Example: detdistill export runs/student/best.pt --imgsz 640 --nms --frame 1280x720
    """
    _need_file(weights, "weights", (".pt",), "Pass the best.pt written by training.")
    from ..data.image_lists import list_images  # lazy: cv2, onnx (the CLI starts without them)
    from .onnx_export import ParityError, default_parity_images, export_onnx, parse_frame

    nms_only = [name for name, value in (("--max-det", max_det), ("--nms-conf", nms_conf), ("--nms-iou", nms_iou))
                if value is not None]
    if nms_only and not nms:
        fail(f"{', '.join(nms_only)}: used only by the NMS in the graph, which needs --nms: add --nms, or leave "
             f"{'it' if len(nms_only) == 1 else 'them'} out (without --nms, NMS runs on the host)")
    if dynamic and batch != 1:
        fail(f"--dynamic makes the batch size dynamic, so --batch {batch} would be ignored: drop one of them (a "
             "TensorRT engine's batch range is set by `detdistill build --batch min,opt,max`)")
    try:
        frame_hw = parse_frame(frame) if frame else None
        images = list_images(parity, limit=8) if parity else default_parity_images()
        out = export_onnx(weights, output, imgsz=imgsz, batch=batch, dynamic=dynamic, opset=opset,
                          simplify=simplify, parity_images=images, nms=nms,
                          max_det=300 if max_det is None else max_det,
                          nms_conf=0.001 if nms_conf is None else nms_conf,
                          nms_iou=0.7 if nms_iou is None else nms_iou, frame=frame_hw, one2one=not one2many)
    except (ValueError, FileNotFoundError, ParityError) as e:
        fail(str(e))
    typer.echo(f"wrote {out}")
    if imgsz is None:
        from ..runtime.backends.onnxruntime import onnx_metadata  # lazy: onnxruntime, loaded by the parity check
        from ..runtime.metadata import ModelInfo  # lazy: as above

        size = max(ModelInfo.from_mapping(onnx_metadata(out)).imgsz)
        typer.secho(f"note: exported at {size} px (the size {weights.name} was trained at, else 640; --imgsz to "
                    "choose another)", fg=typer.colors.YELLOW, err=True)


def quantize(
    model: Path = typer.Argument(..., help="FP32 .onnx from `detdistill export`."),
    data: Path = typer.Option(..., "--data", "-d", parser=path_parser("--data", IMAGES), metavar="PATH",
                              help="Calibration images: folder, .txt list, or data YAML."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output .onnx (default: <model>.int8-<target>.onnx)."),
    target: str = typer.Option("cpu", help="tensorrt: convs only, symmetric (for `build`); cpu: all ops, fast on ONNX Runtime CPU."),
    scheme: Optional[str] = typer.Option(
        None, help="cpu target's weights: u8s7 (default: 7-bit int8, exact on every CPU), u8u8, or u8s8 (full-range "
        "int8: saturates on x86 CPUs without VNNI)."),
    method: str = typer.Option("minmax", help="Calibration: minmax, entropy or percentile."),
    percentile: Optional[float] = typer.Option(None, help="Clip percentile for --method percentile (default 99.999)."),
    num_images: int = typer.Option(500, min=1, help="Calibration images to use (500-1000 recommended)."),
    keep_float: str = typer.Option("head-outputs", help="head-outputs (last convs, DFL, decode) or head (whole Detect)."),
    max_drop: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                             help="mAP50-95 budget, e.g. 0.01; needs --val-data."),
    val_data: Optional[Path] = typer.Option(None, parser=path_parser("--val-data", "a data YAML"), metavar="PATH",
                                            help="Data YAML whose --val-split measures the drop."),
    val_limit: Optional[int] = typer.Option(None, min=1,
                                            help="Use only the first N images of --val-split for --max-drop."),
    val_split: Optional[str] = typer.Option(None, help="Split of --val-data that measures the drop: val (the default), "
                                            "train (more images; keeps val unseen for reporting) or test."),
) -> None:
    """Quantize an ONNX to INT8 Q/DQ, calibrated on your images through the deployed letterbox.

    Example: detdistill quantize student.onnx --data datasets/road.yaml --target tensorrt --max-drop 0.01 --val-data datasets/road.yaml --val-split train
    """
    if model.suffix.lower() == ".pt" and model.is_file():
        from .quantize import checkpoint_to_quantize  # lazy: onnx, torch (only this error needs them)

        fail(checkpoint_to_quantize(model))
    _need_file(model, "model", (".onnx",), EXPORT_ONE)
    if not data.exists():
        fail(f"calibration source {data} does not exist; pass a folder of images or a data YAML")
    from ..data.dataset import SPLITS  # lazy: cv2, onnx (the CLI starts without them)
    from .quantize import CPU_SCHEMES, KEEP_FLOAT, METHODS, TARGETS, quantize_onnx

    if val_split is not None and val_split not in SPLITS:
        fail(f"--val-split must be val, train or test, got {val_split!r}")
    for flag, value, choices in (("--target", target, TARGETS), ("--method", method, METHODS),
                                 ("--keep-float", keep_float, KEEP_FLOAT),
                                 ("--scheme", scheme if target == "cpu" else None, CPU_SCHEMES)):
        if value is not None and value not in choices:
            fail(f"{flag} must be one of {', '.join(choices)}, got {value!r}")
    if max_drop is not None and val_data is None:
        fail("--max-drop needs --val-data: a data YAML whose images measure the drop (e.g. the --data YAML, with "
             "--val-split train to keep its val images unseen)")
    budget_only = [name for name, value in (("--val-data", val_data), ("--val-limit", val_limit),
                                            ("--val-split", val_split)) if value is not None]
    if max_drop is None and budget_only:  # they only measure the budget: without one they would do nothing
        fail(f"{', '.join(budget_only)}: used only to measure the accuracy budget of --max-drop, which is not set: add "
             "--max-drop 0.01 to keep layers in float until the drop is within a point, or leave them out and "
             "score the INT8 file with `detdistill eval`")
    if percentile is not None and method != "percentile":
        fail(f"--percentile sets the clip of --method percentile, but the method is {method}: add --method "
             "percentile, or leave --percentile out")

    if val_data is not None:
        _warn_other_classes(model, val_data)
    try:
        res = quantize_onnx(model, data, output, target=target, scheme=scheme, method=method,
                            percentile=99.999 if percentile is None else percentile, num_images=num_images,
                            keep_float=keep_float, max_drop=max_drop, val_data=val_data, val_limit=val_limit,
                            val_split=val_split or "val")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(str(e))
    for note in res.notes:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)
    in_float = ["the whole head" if keep_float == "head" else "the head's outputs (last convolutions, DFL, decode)"]
    typer.echo(f"wrote {res.path} ({res.target} target, {res.scheme}; in float: {', '.join(in_float + res.float_layers)})")
    if res.drop is not None:
        ci = (f"; 95% interval [{res.drop_interval[0]:.4f}, {res.drop_interval[1]:.4f}] over {res.budget_images} "
              "images" if res.drop_interval else "")
        typer.echo(f"mAP50-95 FP32 {res.fp32_map:.4f} -> INT8 {res.int8_map:.4f} (drop {res.drop:.4f}{ci})")


def _warn_other_classes(model: Path, val_data: Path) -> None:
    """Warn when the budget images of ``--max-drop`` are labelled with other classes than the model predicts: the
    drop would be measured on a meaningless mAP."""
    from .evaluate import class_count_warning, open_detector  # lazy: cv2 (the CLI starts without it)

    try:
        mismatch = class_count_warning(open_detector(model), val_data)
    except (ValueError, KeyError, FileNotFoundError):
        return  # quantize_onnx names a bad model or data YAML
    if mismatch:
        typer.secho(f"warning: --max-drop measures the drop on {val_data}, whose classes are not the model's ("
                    f"{mismatch.split(': ', 1)[0]}): its mAP and the layers chosen by it mean little; measure the budget "
                    "on images labelled with the model's own classes", fg=typer.colors.YELLOW, err=True)


def build(
    model: Path = typer.Argument(..., help=".onnx (FP32, or Q/DQ INT8 from `detdistill quantize --target tensorrt`)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output .engine (default: next to the ONNX)."),
    precision: str = typer.Option("fp16", help="fp32, fp16 or int8."),
    calib: Optional[Path] = typer.Option(None, parser=path_parser("--calib", IMAGES), metavar="PATH",
                                         help="Calibration images for INT8 from a plain ONNX (TensorRT < 11)."),
    calibrator: str = typer.Option("entropy", help="entropy or minmax (implicit INT8 only)."),
    workspace: Optional[float] = typer.Option(None, help="Workspace limit in GiB."),
    dla: Optional[int] = typer.Option(None, help="Jetson DLA core (GPU fallback is on)."),
    batch: Optional[str] = typer.Option(None, help="min,opt,max batch for a --dynamic export, e.g. 1,4,8."),
    timing_cache: Optional[Path] = typer.Option(None, help="Timing cache file (speeds up rebuilds)."),
) -> None:
    """Build a TensorRT engine on this device (engines only run on the TensorRT + GPU that built them).

    Example: detdistill build student.int8-tensorrt.onnx --precision int8
    """
    _need_file(model, "model", (".onnx",), EXPORT_ONE)
    try:
        from .tensorrt_build import CALIBRATORS, PRECISIONS, BuildError, build_engine  # lazy: cv2, onnx
    except ModuleNotFoundError as e:
        if e.name != "onnx":
            raise
        fail("`build` reads the ONNX with the onnx package, not installed here: pip install onnx (all it needs "
             "besides TensorRT; the export extra, detdistill[export], would also bring pip's onnxruntime)")

    # the values first: a typo is named before TensorRT or a GPU is looked for
    if precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if calibrator not in CALIBRATORS:
        fail(f"--calibrator must be one of {', '.join(CALIBRATORS)}, got {calibrator!r}")
    rng = None
    if batch:
        try:
            rng = tuple(int(v) for v in batch.split(","))
            assert len(rng) == 3
        except (ValueError, AssertionError):
            fail(f"--batch must be three integers min,opt,max like 1,4,8, got {batch!r}")
    try:
        out = build_engine(model, output, precision=precision, calib=calib, calibrator=calibrator,
                           workspace_gb=workspace, dla_core=dla, batch=rng, timing_cache=timing_cache)
    except BuildError as e:
        fail(str(e))
    typer.echo(f"wrote {out} and {out}.json")


def eval_cmd(
    model: Path = typer.Argument(..., help=".pt, .onnx (FP32 or INT8) or .engine."),
    data: Path = typer.Option(..., "--data", "-d", parser=path_parser("--data", "a YOLO data YAML"), metavar="PATH",
                              help="YOLO data YAML."),
    split: str = typer.Option("val", help="Split to evaluate."),
    imgsz: Optional[int] = typer.Option(None, max=4096,
                                        help="Input size for a .pt (default: the size it was trained at, else 640); "
                                        "checked for ONNX/engines."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N images."),
    device: str = typer.Option("cpu", help="Where it runs: cpu, cuda, auto; tensorrt for an ONNX (ONNX Runtime's "
                               "TensorRT provider)."),
    rect: bool = typer.Option(False, help=".pt only: rectangular batches like YOLO(pt).val()."),
    int8: str = typer.Option(
        "auto", help="How an INT8 ONNX runs: auto (a tensorrt-target model simulated as TensorRT computes it, a "
        "cpu-target one on ONNX Runtime's integer kernels), kernels, or simulate (Q/DQ as float operations)."),
    corrupt: Optional[str] = typer.Option(
        None, help="Also score the same images under corruptions: comma-separated names from fog, rain, snow, glare, "
        "dark, motion_blur, noise, jpeg (or all), each optionally :severity 1-5; without one, the mean over the 5 "
        "severities (ImageNet-C protocol). Needs pip install 'detdistill\\[robust]'."),
    class_map: Optional[str] = typer.Option(
        None, "--class-map", help="Score a model of other classes (a COCO teacher) on this dataset: 'auto' maps them by "
        "the data YAML's teacher_classes/coco_classes block, else by class name; or 'Truck=truck,bus;Ambulance=' "
        "(dataset class = model class(es), nothing: scored from none; classes not named match by name), as train's "
        "--class-map."),
) -> None:
    """mAP50-95 / mAP50 through the deployed pipeline (letterbox, decode, NMS), and what computed it.

    Example: detdistill eval student.int8-cpu.onnx --data datasets/coco-mini.yaml --corrupt fog,rain,noise:3
    """
    _need_file(model, "model", (".pt", ".onnx", ".engine"), "Pass a .pt, .onnx or .engine.")
    _need_file(data, "data YAML", (".yaml", ".yml"), "Pass a YOLO data YAML with a val split.")
    if model.suffix.lower() == ".pt":
        try:
            import torch  # noqa: F401  # lazy: torch (scoring a .pt needs it; it loads below anyway)
        except ModuleNotFoundError:
            fail(f"{model.name} is a PyTorch checkpoint, and torch is not installed here (a runtime install): score "
                 "its exported .onnx or .engine, or pip install 'detdistill[train]' to score the .pt")
    from .evaluate import INT8_MODES, UnmappedClassesWarning, evaluate, open_detector  # lazy: cv2 (CLI starts without)

    if int8 not in INT8_MODES:  # evaluate() would name its parameter, not the flag
        fail(f"--int8 must be one of {', '.join(INT8_MODES)}, got {int8!r}")

    try:
        specs = _corruption_specs(corrupt)
        det = open_detector(model, imgsz=imgsz, device=device, int8=int8)
        _warn(det)
        if imgsz is None and model.suffix.lower() == ".pt":
            typer.secho(f"note: {model.name} is scored at {max(det.imgsz)} px (a .pt at the size it was trained at, "
                        "else 640; --imgsz to choose another)", fg=typer.colors.YELLOW, err=True)
        if det.frame is not None:
            h, w = det.frame
            typer.secho(f"note: {model.name} takes {w}x{h} camera frames (its letterbox is in the graph): each image "
                        f"of another size is letterboxed to {w}x{h} first, as that camera would frame it, so the score "
                        "can differ from the same model exported without --frame", fg=typer.colors.YELLOW, err=True)
        mapping = _score_map(det, data, class_map)
        with warnings.catch_warnings():  # the note of _score_map names the data classes left unmapped
            warnings.simplefilter("ignore", UnmappedClassesWarning)
            r = evaluate(det, data, split=split, limit=limit, rect=rect, class_map=mapping)  # warns of other classes
            typer.echo(f"{model.name}: {r.summary()}")
            if specs:
                _eval_corrupted(lambda c: evaluate(det, data, split=split, limit=limit, rect=rect, corrupt=c,
                                                   class_map=mapping).map50_95, specs, r.map50_95)
    except (ValueError, KeyError, FileNotFoundError) as e:
        fail(str(e))


def _score_map(det, data: Path, spec: Optional[str]) -> dict[int, int] | None:
    """``--class-map`` as evaluate's {model class id: dataset class id} (None: scored by class id), said in a note."""
    if spec is None:
        return None
    from ..data.class_map import SCORING, describe_scoring, parse_class_map_arg, score_map  # lazy: the CLI starts fast

    names = [det.names.get(i, str(i)) for i in range(len(det.names))]
    given = None if spec.strip().lower() == "auto" else parse_class_map_arg(spec, SCORING)
    mapping, cm = score_map(names, data, given)
    if mapping is None:
        typer.secho(f"note: --class-map {spec}: the model's classes are the dataset's; scored by class id", err=True)
        return None
    typer.secho(f"note: {data.name}'s classes <- the model's: {describe_scoring(cm)} (other model classes are not "
                "scored)", err=True)
    return mapping


def _corruption_specs(spec: Optional[str]) -> list[tuple[str, int | None]]:
    """The parsed ``--corrupt`` spec (empty without one); checks that albumentations is installed."""
    if spec is None:
        return []
    from ..data.corruptions import albumentations, parse_spec  # lazy: the CLI starts fast without it

    specs = parse_spec(spec)
    albumentations()
    return specs


def _eval_corrupted(score, specs: list[tuple[str, int | None]], clean: float) -> None:
    """Print mAP50-95 under each corruption (the mean over severities 1-5 where none is given), then their mean,
    mPC, with rPC = mPC / clean (:mod:`detdistill.export.robustness`)."""
    from .robustness import robustness  # lazy: the CLI starts fast without it

    def rel(v: float) -> str:
        return f"{100 * v / clean:.1f}% of clean" if clean > 0 else "clean is 0"

    r = robustness(score, specs, clean)
    for name, value in r.per_corruption.items():
        maps = r.per_severity[name]
        label = name if ":" in name else f"{name} (mean of 1-5)"
        each = "" if ":" in name else "; severities 1-5: " + " ".join(f"{m:.4f}" for m in maps)
        typer.echo(f"  {label:<26} mAP50-95 {value:.4f}  ({rel(value)}{each})")
    typer.echo(f"  {'mean under corruption':<26} mAP50-95 {r.mpc:.4f}  (mPC; rPC {rel(r.mpc)})")


def bench_cmd(
    model: Path = typer.Argument(..., help=".onnx or .engine."),
    images: Optional[Path] = typer.Option(
        None, parser=path_parser("--images", IMAGES), metavar="PATH",
        help="Real frames to cycle, the first 16: a folder, an image, a .txt list or a data YAML (default: a gray "
             "frame)."),
    runs: int = typer.Option(100, min=50, help="Timed runs (>= 50, for stable medians and p90)."),
    warmup: int = typer.Option(10, min=0, help="Untimed warm-up runs."),
    device: str = typer.Option("auto", help="ONNX Runtime device: cpu, cuda, tensorrt, auto."),
) -> None:
    """Latency per stage (median, p90) and throughput of the full Detector pipeline.

    Example: detdistill bench student.engine --images samples/
    """
    _need_file(model, "model", (".onnx", ".engine"), "Pass an exported .onnx or a built .engine.")
    from ..runtime import Detector  # lazy: cv2 (the CLI starts without it)
    from .bench import bench
    from ..runtime.backends import describe_backend

    kwargs = {"device": device} if model.suffix.lower() == ".onnx" else {}
    try:
        det = Detector(model, fit_frames=True, **kwargs)  # a --frame model: other-size frames fitted on the host
        _warn(det)
        r = bench(det, images, runs=runs, warmup=warmup)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(str(e))
    if r.note:
        typer.secho(f"note: {r.note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(r.table())
    typer.echo(f"on {describe_backend(det.backend)}")


def _warn(det) -> None:
    """Print the backend's accuracy warning (an INT8 scheme that saturates on this CPU), if any."""
    message = getattr(det.backend, "accuracy_warning", None)
    if message:
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


def register(app: typer.Typer) -> None:
    """Add the deploy verbs to the main ``detdistill`` app."""
    app.command("export")(export)
    app.command("quantize")(quantize)
    app.command("build")(build)
    app.command("eval")(eval_cmd)
    app.command("bench")(bench_cmd)
