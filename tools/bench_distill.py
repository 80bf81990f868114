#!/usr/bin/env python3
"""Distillation benchmark: the same student, data, epochs, image size and seeds trained without KD, with
ultralytics' built-in distillation (``distill_model=``), and with each detdistill recipe.

The evaluation set is sealed (:mod:`detdistill.data.splits`): training validates on its tuning half, so
best.pt is chosen there, and every run is then scored on both halves through ``detdistill.export.evaluate``.
The summary gives tuning and test mAP50-95 per method (mean and half-range over seeds), each method's
gain on the test half against no KD and against ultralytics' built-in, paired by seed, with a 95%
bootstrap interval over the test half's photos (copies of one photo drawn together; a gain whose interval
holds 0 is not claimed), and train seconds per epoch. Every run is written as a JSON line, its per-image
matches as a pickle beside it.

Example (the vehicles track on a CPU, a narrow student from scratch)::

    YOLO_OFFLINE=1 python tools/bench_distill.py --track vehicles --student quarter \
        --methods none,ultralytics,default --seeds 0,1 --epochs 10 --imgsz 320

The ``shapes`` track is the quickstart's generated dataset with a teacher trained on it (imgsz 128 and
the quickstart's training settings override --imgsz and the optimizer), fast enough on a CPU for
several seeds and every distiller; its tuning half is the generated val set, its test half a fresh set
generated with another seed::

    YOLO_OFFLINE=1 python tools/bench_distill.py --track shapes --student half --epochs 15 --imgsz 128 \
        --methods none,ultralytics,default,logit-box,cwd --seeds 0,1

Each run is a subprocess (clean ultralytics state); finished runs found in --out are reused, so an
interrupted benchmark resumes where it stopped; with ``--int8``, a finished run that was not scored in INT8 is
quantized after training and scored, not trained again.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures"))
TRACKS = {"vehicles": FIXTURES / "vehicles" / "data.yaml", "coco-mini": FIXTURES / "coco-mini" / "data.yaml"}
TEACHER = FIXTURES / "weights" / "yolov8n-coco.pt"
PROTOCOL = "sealed-v1"  # runs of an earlier protocol in --out are not reused
SHAPES_TEST = {"n": 200, "seed": 1000}  # the shapes track's test set: generated apart from everything tuned on


def shapes_track(work: Path) -> tuple[str, str]:
    """The generated shapes dataset and a teacher trained on it (the quickstart's first stages, cached)."""
    from detdistill.pipeline.config import load_pipeline
    from detdistill.pipeline.runner import Pipeline
    from detdistill.quickstart import quickstart_recipe

    cfg, text = load_pipeline(quickstart_recipe())
    pipeline = Pipeline(cfg, text, work)
    data = pipeline.data()
    return str(data), str(pipeline.teacher(data))


def pruned_student(teacher: str, target: float, imgsz: int, data: str, work: Path) -> str:
    """The teacher pruned to ``target`` of its GFLOPs and refitted on ``data``'s train images (cached in ``work``):
    a student that inherits its weights."""
    from detdistill.prune import PruneConfig, prune_checkpoint

    out = work / f"{Path(teacher).stem}-pruned{target:g}-refit.pt"
    if not out.exists():
        prune_checkpoint(teacher, out, PruneConfig(target=target, imgsz=imgsz, calib=data))
    return str(out)


def sealed_data(track: str, data: str, work: Path) -> tuple[str, dict[str, list[Path]]]:
    """A training YAML that validates on the tuning half, and the images of both halves."""
    from detdistill.data.splits import split_halves, write_half_yaml
    from detdistill.data.dataset import load_dataset

    if track == "shapes":
        from detdistill.data.shapes import make_shapes_dataset

        test = make_shapes_dataset(work / "shapes-test", n_train=0, n_val=SHAPES_TEST["n"], seed=SHAPES_TEST["seed"])
        return data, {"tune": load_dataset(data).images("val"), "test": load_dataset(test).images("val")}
    return str(write_half_yaml(data, work / "sealed")), split_halves(load_dataset(data).images("val"))


def int8_artifact(best: Path, data: str, imgsz: int) -> tuple[Path, str]:
    """The INT8 ONNX of a run: its own Q/DQ export after QAT/QAD, else PTQ for TensorRT calibrated on train images.

    Both are scored as simulated TensorRT INT8 (Q/DQ as float operations, as an int32-accumulating engine computes).
    """
    import onnx

    from detdistill.data.image_lists import list_images
    from detdistill.export.onnx_export import default_parity_images, export_onnx
    from detdistill.export.qdq import has_qdq
    from detdistill.export.quantize import quantize_onnx

    onnx_path = export_onnx(best, best.with_suffix(".onnx"), imgsz=imgsz, parity_images=default_parity_images())
    if has_qdq(onnx.load(str(onnx_path))):
        return onnx_path, "qad/qat export"
    res = quantize_onnx(onnx_path, list_images(data, limit=500), target="tensorrt", cache_dir=best.parent)
    return res.path, "ptq tensorrt"


def file_part(name: str) -> str:
    """A track or student, which may be a path, as one part of a file name inside --out."""
    return name.replace("\\", "/").strip("/").replace("/", "_")


def records_path(out: Path, row: dict) -> Path:
    """Where one run's per-image test and tuning matches are kept."""
    name = (f"{file_part(row['track'])}-{file_part(row['student'])}-e{row['epochs']}-{row['imgsz']}-{row['method']}"
            f"-s{row['seed']}.pkl")
    return out / "records" / name


def track_data(track: str, imgsz: int, out: Path) -> tuple[str, int]:
    """A track's dataset YAML and the image size its runs train at: ``imgsz``, but the quickstart's on shapes."""
    if track == "shapes":
        from detdistill.quickstart import quickstart_recipe

        return shapes_track(out / "shapes")[0], quickstart_recipe()["imgsz"]
    return str(TRACKS.get(track, track)), imgsz


def run_one(method: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one (method, seed) in this process and return its measurements."""
    from ultralytics import YOLO

    from detdistill.distill import DistillationTrainer, check_inputs
    from detdistill.distill.students import scaled_model_yaml
    from detdistill.quickstart import quickstart_recipe
    from detdistill.distill.student_trainer import StudentTrainer
    from detdistill.yaml_numbers import load_yaml

    family, _, size = args.student.rpartition("-")   # quarter, half, or e.g. yolo11-half (another family)
    widths = {"quarter": 0.0625, "half": 0.125}
    student = str(scaled_model_yaml(family or "yolov8", width=widths[size])) if size in widths else args.student
    train_args = dict(
        epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=args.workers, seed=seed,
        deterministic=False, plots=False, project=str(args.out / "runs"), name=f"{method}-s{seed}", exist_ok=True,
        close_mosaic=args.close_mosaic, fraction=args.fraction, val=True, amp=True, device=args.device,
    )
    data, train_args["imgsz"] = track_data(args.track, args.imgsz, args.out)
    teacher = str(args.teacher)
    if args.track == "shapes":  # the quickstart's generated data, its teacher and its training settings
        if args.teacher == TEACHER:  # not, e.g., the student itself (self-QAD)
            teacher = shapes_track(args.out / "shapes")[1]
        train_args.update({k: v for k, v in quickstart_recipe()["train"].items() if k not in {"epochs", "workers"}})
    if args.student.startswith("pruned"):  # e.g. pruned0.5: the teacher at half its GFLOPs
        student = pruned_student(teacher, float(args.student[6:] or 0.5), train_args["imgsz"], data, args.out)
    for kv in args.train_arg or []:
        key, value = kv.split("=", 1)
        train_args[key] = load_yaml(value)
    train_data, halves = sealed_data(args.track, data, args.out)
    train_args["data"] = train_data
    run_dir = Path(train_args["project"]) / train_args["name"]
    if (done := finished_training(run_dir, args.epochs)) is not None:  # trained, not scored: score it
        print(f"{run_dir}: trained earlier, scoring it", flush=True)
        best = run_dir / "weights" / "best.pt"
        n_params = sum(p.numel() for p in YOLO(str(best)).model.parameters())
        return score_run(method, seed, args, data, halves, train_args, best, *done, n_params)
    model = YOLO(student)
    epoch_times: list[float] = []
    starts: dict[str, float] = {}
    model.add_callback("on_train_epoch_start", lambda t: starts.__setitem__("t", time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda t: epoch_times.append(time.perf_counter() - starts["t"]))
    # a "+PRESET" suffix trains with that augmentation preset (+road, +road-heavy); "+PRESET-clean" also shows the
    # KD teacher the clean images
    full_method, (method_name, _, augment) = method, method.partition("+")
    teacher_clean = augment.endswith("-clean")
    augment = augment.removesuffix("-clean") or None
    plain = StudentTrainer.with_options(args.freeze_bn, augment)  # keeps a pruned student's own layers
    method = method_name
    if method == "none":
        metrics = model.train(trainer=plain, **train_args)
    elif method == "ultralytics":
        metrics = model.train(trainer=plain, distill_model=teacher, **train_args)
    elif method == "qat":  # ultralytics' quantization-aware training (ModelOpt INT8), no teacher
        metrics = model.train(trainer=plain, quantize=8, **train_args)
    else:  # a detdistill recipe; qad[:<recipe>] trains it with INT8 fake quantization, qad-self[:<recipe>] too,
        # with the student's own FP32 checkpoint as the teacher
        kind, _, recipe_name = method.partition(":")
        int8 = kind in ("qad", "qad-self")
        if kind == "qad-self":
            if not student.endswith(".pt"):
                raise SystemExit(f"qad-self needs a trained student (.pt) to distill from, not {student}")
            teacher = student
        recipe, _ = check_inputs(student, teacher, data, recipe_name if int8 else method)
        trainer = DistillationTrainer.configure(teacher, recipe, freeze_bn=args.freeze_bn, int8=int8, augment=augment,
                                                teacher_clean=teacher_clean)
        metrics = model.train(trainer=trainer, **train_args)
    n_params = sum(p.numel() for p in model.model.parameters())
    epoch_s = statistics.median(epoch_times) if epoch_times else float("nan")
    return score_run(full_method, seed, args, data, halves, train_args, Path(model.trainer.best),
                     float(metrics.box.map), epoch_s, n_params)


def finished_training(run_dir: Path, epochs: int) -> tuple[float, float] | None:
    """``(best validation mAP50-95, median seconds per epoch)`` of a training that finished in ``run_dir`` (its
    best.pt, and every epoch in results.csv), so that a run whose scoring failed is scored, not trained again."""
    results, best = run_dir / "results.csv", run_dir / "weights" / "best.pt"
    if not (results.is_file() and best.is_file()):
        return None
    with results.open() as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    if len(rows) < epochs:
        return None
    ends = [float(r["time"]) for r in rows]  # seconds since the start, at each epoch's end
    seconds = [b - a for a, b in zip([0.0, *ends], ends)]
    return max(float(r["metrics/mAP50-95(B)"]) for r in rows), statistics.median(seconds)


def score_run(method: str, seed: int, args: argparse.Namespace, data: str, halves: dict[str, list[Path]],
              train_args: dict, best: Path, val_map: float, epoch_s: float, n_params: int) -> dict:
    """A trained run's row: its ``best`` scored on both halves (and in INT8 with ``--int8``), its records saved."""
    from detdistill.export.evaluate import evaluate

    row = {
        "protocol": PROTOCOL, "method": method, "seed": seed, "track": args.track, "student": args.student,
        "epochs": args.epochs, "imgsz": args.imgsz, "val_map": val_map, "epoch_s": epoch_s, "params": n_params,
        "freeze_bn": args.freeze_bn, "train_args": {k: v for k, v in train_args.items() if k in ("optimizer", "lr0")},
    }
    records: dict = {}  # each record names its image's photo: the bootstrap draws photos
    for half, files in halves.items():
        r = evaluate(best, data, files=files, imgsz=train_args["imgsz"], keep_records=True)
        row[f"{half}_map"], row[f"{half}_map50"], records[half] = r.map50_95, r.map50, r.records
    if args.int8:
        score_int8(best, data, train_args["imgsz"], halves, row, records)
    path = records_path(args.out, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(records))
    return row


def score_int8(best: Path, data: str, imgsz: int, halves: dict[str, list[Path]], row: dict, records: dict) -> None:
    """Score a run's INT8 artifact on both halves, into its ``row`` and its per-image ``records``."""
    from detdistill.export.evaluate import evaluate

    int8_model, row["int8_from"] = int8_artifact(best, data, imgsz)
    for half, files in halves.items():
        r = evaluate(int8_model, data, files=files, keep_records=True)
        row[f"{half}_int8_map"], records[f"{half}_int8"] = r.map50_95, r.records
        row["int8_evaluator"] = r.evaluator


def add_int8(row: dict, args: argparse.Namespace) -> dict:
    """A run trained earlier without ``--int8``, quantized after training and scored in INT8 now (its best.pt is
    not trained again); returns its row with the INT8 scores."""
    data, imgsz = track_data(row["track"], row["imgsz"], args.out)
    _, halves = sealed_data(row["track"], data, args.out)
    best = args.out / "runs" / f"{row['method']}-s{row['seed']}" / "weights" / "best.pt"
    path = records_path(args.out, row)
    records = pickle.loads(path.read_bytes())
    row = dict(row)
    score_int8(best, data, imgsz, halves, row, records)
    path.write_bytes(pickle.dumps(records))
    return row


def run_key(r: dict) -> tuple:
    """What names one run in results.jsonl: its protocol, method, seed, track, student, epochs and image size."""
    return r.get("protocol"), r["method"], r["seed"], r["track"], r["student"], r["epochs"], r["imgsz"]


def planned_key(args: argparse.Namespace, method: str, seed: int) -> tuple:
    """The ``run_key`` of the run (method, seed) this invocation plans."""
    return run_key({"protocol": PROTOCOL, "method": method, "seed": seed, "track": args.track,
                    "student": args.student, "epochs": args.epochs, "imgsz": args.imgsz})


def latest_rows(lines: list[str]) -> list[dict]:
    """The runs of a results.jsonl, each once: a later line for the same run (its INT8 scores added) supersedes
    the earlier one."""
    return list({run_key(r): r for r in map(json.loads, lines)}.values())


def folder_runs(out: Path, track: str, student: str, epochs: int, imgsz: int) -> list[dict]:
    """The finished runs in ``out``'s results.jsonl of this protocol, track, student, epochs and image size (each run
    once, its latest line); none where there is no results.jsonl."""
    results = out / "results.jsonl"
    rows = latest_rows(results.read_text().splitlines()) if results.is_file() else []
    wanted = (PROTOCOL, track, student, epochs, imgsz)
    return [r for r in rows if (r.get("protocol"), r["track"], r["student"], r["epochs"], r["imgsz"]) == wanted]


def add_folder_options(ap: argparse.ArgumentParser, track: str, student: str, epochs: int) -> None:
    """The options of a tool that reads the runs of a bench_distill.py --out folder (see :func:`folder_runs`)."""
    ap.add_argument("--out", type=Path, required=True, help="the bench_distill.py --out folder")
    ap.add_argument("--track", default=track)
    ap.add_argument("--student", default=student)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--imgsz", type=int, default=320)


def summarize(rows: list[dict], out: Path, samples: int = 1000, base: str = "none") -> str:
    """Tuning and test mAP per method, and each method's paired test-half gain with its bootstrap interval.

    Every number is computed here from the runs' stored per-image matches (one metric, COCO's, whichever
    version of the evaluator scored the run)."""
    from detdistill.export.compare import paired_gain
    from detdistill.export.evaluate import map_of

    by_method: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], {})[r["seed"]] = r

    def spread(vals: list[float]) -> str:
        half = (max(vals) - min(vals)) / 2 if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.3f} ± {half:.3f}"

    @functools.cache
    def stored(path: Path) -> dict:
        """A run's pickled matches, read once; records that do not name their photos get those the run stored
        beside them (``photos``, per half), so that every interval draws photos."""
        run = pickle.loads(path.read_bytes())
        beside = run.pop("photos", {})  # half -> photos, kept by runs whose records do not name them
        for key, records in run.items():  # "test", "test_int8", ...
            for record, photo in zip(records, beside.get(key.split("_")[0], [])):
                record.photo = record.photo or photo
        return run

    def test_records(r: dict, key: str) -> list:
        return stored(records_path(out, r))[key]

    def scores(rs: list[dict], key: str, which: int = 0) -> list[float]:
        """mAP50-95 (``which`` 0) or mAP50 (1) of each run's ``key`` half, from its matches."""
        return [map_of(test_records(r, key))[which] for r in rs]

    def gain(method: str, base: str, key: str = "test") -> str:
        if base not in by_method or method == base:
            return "-"
        seeds = sorted(set(by_method[method]) & set(by_method[base]))
        if not seeds:
            return "no common seed"
        g = paired_gain([test_records(by_method[method][s], key) for s in seeds],
                        [test_records(by_method[base][s], key) for s in seeds], samples=samples)
        return f"{g} (per seed {', '.join(f'{100 * d:+.1f}' for d in g.per_seed)})"

    base_t = statistics.mean(r["epoch_s"] for r in by_method["none"].values()) if "none" in by_method else None
    lines = [
        "| method | seeds | tuning half mAP50-95 | **test half mAP50-95** | test mAP50 "
        f"| test gain vs {'no KD' if base == 'none' else base} [95% CI] "
        "| test gain vs ultralytics [95% CI] | s/epoch (vs no KD) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, runs in by_method.items():
        rs = [runs[s] for s in sorted(runs)]
        t = statistics.mean(r["epoch_s"] for r in rs)
        ratio = f" ({t / base_t:.2f}x)" if base_t else ""
        lines.append(
            f"| {method} | {','.join(str(r['seed']) for r in rs)} | {spread(scores(rs, 'tune'))} | "
            f"{spread(scores(rs, 'test'))} | {spread(scores(rs, 'test', 1))} | "
            f"{gain(method, base)} | {gain(method, 'ultralytics')} | {t:.1f}{ratio} |"
        )
    every_run = [r for by_seed in by_method.values() for r in by_seed.values()]
    if every_run and all("test_int8_map" in r for r in every_run):
        lines += ["", "INT8 (QAT/QAD: their own Q/DQ export; other arms: PTQ for TensorRT on train images; all scored as "
                  "simulated TensorRT INT8):", "",
                  "| method | tuning half INT8 | **test half INT8** | test INT8 - its FP32 [95% CI] "
                  "| test INT8 gain vs ultralytics QAT [95% CI] | test INT8 gain vs no KD + PTQ [95% CI] |",
                  "|---|---|---|---|---|---|"]
        for method, runs in by_method.items():
            rs = [runs[s] for s in sorted(runs)]
            drop = paired_gain([test_records(r, "test_int8") for r in rs], [test_records(r, "test") for r in rs],
                               samples=samples)
            lines.append(f"| {method} ({rs[0]['int8_from']}) | {spread(scores(rs, 'tune_int8'))} | "
                         f"{spread(scores(rs, 'test_int8'))} | {drop} | "
                         f"{gain(method, 'qat', 'test_int8')} | {gain(method, 'none', 'test_int8')} |")
    return "\n".join(lines)


def named_recipe(method: str) -> str:
    """A method with ``default`` replaced by the recipe it stands for (``default+road`` -> ``at+road``, ``qad`` ->
    ``qad:at``, ``qad-self`` -> ``qad-self:logit-box``), so that every stored run names the losses it trained with."""
    from detdistill.distill.qad import SELF_RECIPE
    from detdistill.recipes import DEFAULT_RECIPE

    name, plus, suffix = method.partition("+")
    if name in ("qad", "qad:default"):
        name = f"qad:{DEFAULT_RECIPE}"
    elif name == "qad-self":  # as `train --int8` without a teacher: the recipe QAD from its own weights uses
        name = f"qad-self:{SELF_RECIPE}"
    elif name == "default":
        name = DEFAULT_RECIPE
    return name + plus + suffix


def method_problem(method: str) -> str | None:
    """Why ``method`` (as :func:`named_recipe` names it) cannot be trained, or ``None``."""
    from detdistill.data.road_augment import PRESETS
    from detdistill.recipes import builtin_recipes

    name, plus, suffix = method.partition("+")
    preset = suffix.removesuffix("-clean")
    if plus and preset not in PRESETS:
        return f"method {method!r}: unknown augmentation preset {preset!r} after '+': choose from {', '.join(PRESETS)}"
    if plus and suffix.endswith("-clean") and name in ("none", "ultralytics", "qat"):
        return (f"method {method!r}: '-clean' shows the KD teacher the clean images, and {name} has no detdistill "
                "teacher")
    if name in ("none", "ultralytics", "qat"):
        return None
    kind, _, recipe = name.partition(":")
    recipe = recipe if kind in ("qad", "qad-self") else name
    if recipe in builtin_recipes() or Path(recipe).is_file():
        return None
    return (f"method {method!r}: {recipe!r} is neither none, ultralytics, qat, qad[:recipe], qad-self[:recipe] nor a "
            f"recipe (built-in: {', '.join(builtin_recipes())}; or a recipe YAML path)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--track", default="vehicles", help="vehicles | coco-mini | shapes (generated) | a dataset YAML")
    ap.add_argument("--student", default="quarter",
                    help="quarter / half (yolov8n at 1/4 / 1/2 width; yolo11-half, yolo26-quarter, ...: another "
                    "family at that width, from scratch), pruned<ratio> (the teacher pruned to that fraction of its "
                    "GFLOPs, e.g. pruned0.5), or a model YAML/.pt")
    ap.add_argument("--teacher", type=Path, default=TEACHER,
                    help="the KD teacher (default: the COCO fixture; on shapes, the track's own teacher)")
    ap.add_argument("--methods", default="none,ultralytics,default",
                    help="none, ultralytics, detdistill recipes (default: the recipe it stands for), qat "
                    "(ultralytics' INT8 QAT), qad[:recipe] (detdistill's quantization-aware distillation, default "
                    "recipe) or qad-self[:recipe] (QAD with a .pt student's own FP32 weights as the teacher, "
                    "logit-box by default); a suffix +PRESET trains with that augmentation preset (+road, "
                    "+road-heavy), +PRESET-clean also shows the KD teacher the clean images")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--close-mosaic", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--freeze-bn", action="store_true", help="keep the student's BatchNorm statistics (every arm)")
    ap.add_argument("--train-arg", action="append", help="extra ultralytics train argument key=value (repeatable)")
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples per interval")
    ap.add_argument("--int8", action="store_true", help="also score every run in INT8 (methods qat and qad train "
                    "in INT8; the others are quantized after training)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_distill")
    ap.add_argument("--summary-only", action="store_true", help="train nothing: summarize the finished runs in --out")
    ap.add_argument("--base", default="none", help="the method the summary's first gain column is paired against")
    ap.add_argument("--check", action="store_true", help="check the methods and seeds, then exit (train nothing)")
    ap.add_argument("--single", help=argparse.SUPPRESS)  # internal: METHOD:SEED, run in this process
    args = ap.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args.methods = ",".join(named_recipe(m.strip()) for m in args.methods.split(","))
    if problem := next(filter(None, map(method_problem, args.methods.split(","))), None):
        ap.error(problem)
    if not all(s.strip().isdigit() for s in args.seeds.split(",")):
        ap.error(f"--seeds {args.seeds!r}: give seeds as integers separated by commas, e.g. 0,1")
    if args.check:
        print(f"ok: {len(args.methods.split(','))} method(s) x {len(args.seeds.split(','))} seed(s): "
              f"{args.methods}; seeds {args.seeds}")
        return
    args.out = args.out.resolve()  # ultralytics puts a relative project under its own runs folder
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"

    have = {run_key(r): r for r in latest_rows(results.read_text().splitlines())} if results.exists() else {}
    if args.single:  # train the run, or score a finished one in INT8
        method, seed = args.single.rsplit(":", 1)
        earlier = have.get(planned_key(args, method, int(seed)))
        row = add_int8(earlier, args) if earlier else run_one(method, int(seed), args)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return

    plan = [(m, int(s)) for s in args.seeds.split(",") for m in args.methods.split(",")]
    failed = 0
    for i, (method, seed) in enumerate(plan, 1):
        earlier = have.get(planned_key(args, method, seed))
        if earlier and not (args.int8 and "test_int8_map" not in earlier and not args.summary_only):
            print(f"[{i}/{len(plan)}] {method} seed {seed}: done earlier, reused", flush=True)
            continue
        if args.summary_only:
            print(f"[{i}/{len(plan)}] {method} seed {seed}: not run (summary only)", flush=True)
            continue
        print(f"[{i}/{len(plan)}] {method} seed {seed}" + (": done earlier, reused; quantizing and scoring it in "
              "INT8" if earlier else "") + " ...", flush=True)
        t0 = time.time()
        argv = [sys.executable, __file__, "--single", f"{method}:{seed}"] + sys.argv[1:]
        # a reused run's INT8 scoring logs beside its training log, not over it
        log = args.out / f"{file_part(args.track)}-{method}-s{seed}{'-int8' if earlier else ''}.log"
        with log.open("w") as f:
            rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
        print(f"    {'ok' if rc == 0 else f'FAILED (rc={rc}), see {log}'} in {time.time() - t0:.0f}s", flush=True)
        failed += rc != 0
    rows = folder_runs(args.out, args.track, args.student, args.epochs, args.imgsz)
    rows = [r for r in rows if r["method"] in args.methods.split(",") and str(r["seed"]) in args.seeds.split(",")]
    from detdistill.runtime.cpu import instruction_set

    print(f"\n{args.track}, student {args.student}, {args.epochs} epochs, imgsz {args.imgsz}, seeds {args.seeds}, "
          f"CPU {instruction_set()}; best.pt chosen on the tuning half, gains on the test half:\n")
    print(summarize(rows, args.out, args.bootstrap, named_recipe(args.base)))
    if failed:
        sys.exit(f"{failed} run(s) failed: see their logs in {args.out}")


if __name__ == "__main__":
    main()
