#!/usr/bin/env python
"""INT8 weight schemes of the cpu target on this CPU and on emulated CPUs (AVX2-only x86, ARM64).

Exports the teacher fixture (or ``--weights``, e.g. a trained student), quantizes it once per scheme
(calibrated on the track's train images), and scores FP32, each INT8 model on ONNX Runtime's integer
kernels, and each INT8 model simulated (Q/DQ in float, what an exact int32-accumulating kernel computes)
on both halves of the track's val images (coco-mini, or vehicles through the model's class map).
``--tensorrt`` adds the tensorrt target's file, Q/DQ on conv inputs (the default) and on conv inputs and
outputs (ONNX Runtime's placement). With ``--emulate haswell,cortex-a57,cortex-a76``, the integer-kernel scores
are measured again on each emulated CPU (``tools/emulated_cpu.py``: an AVX2-only x86, an ARMv8.0 core without dot
product, an ARMv8.2 core with it), which runs ONNX Runtime's real kernels for that CPU, saturation included.
Only the INT8 models are emulated (FP32 runs about 5x slower there, and float kernels cannot saturate); latency
is measured natively only (emulated time means nothing). The
last column is each INT8 model's drop below FP32 on the test half with a 95% bootstrap interval over its
images (``detdistill.export.compare``, copies of one photo drawn together), scored as ``detdistill eval`` scores
it (tensorrt: simulated). ``--heldout`` (the COCO teacher on vehicles) scores the test column on the test half of
every vehicles image, train and val, less the calibration photos: 3-4x the val test half.

    YOLO_OFFLINE=1 python tools/bench_int8_cpu.py --imgsz 320 --schemes u8s8,u8s7,u8u8 --emulate haswell,cortex-a57,cortex-a76
    YOLO_OFFLINE=1 python tools/bench_int8_cpu.py --imgsz 320 --schemes u8s7 --methods minmax,percentile,entropy
    YOLO_OFFLINE=1 python tools/bench_int8_cpu.py --track vehicles --schemes none --tensorrt \\
        --calib 104 --calib-start 104
    YOLO_OFFLINE=1 python tools/bench_int8_cpu.py --track vehicles --schemes u8s7 --tensorrt --heldout
    YOLO_OFFLINE=1 python tools/bench_int8_cpu.py --track vehicles --weights STUDENT.pt --schemes none \\
        --tensorrt --max-drop 0.005
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import emulated_cpu  # noqa: E402  (this folder: the emulated CPUs)
os.environ.setdefault("YOLO_OFFLINE", "1")
FIX = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures"))
TRACKS = {"coco-mini": FIX / "coco-mini" / "data.yaml", "vehicles": FIX / "vehicles" / "data.yaml"}
TEACHER = FIX / "weights" / "yolov8n-coco.pt"


def eval_sets(track: str, calib: list[Path], heldout: bool) -> dict[str, list[Path]]:
    """The images every model is scored on: the tuning and test halves of the track's val images.

    ``heldout``: the test set grows to the test half of every image of the track, train and val, less the photos
    calibrated on; for a model that never trained on the track (the COCO teacher on vehicles), these are as unseen
    as the val images and 3-4x as many."""
    from detdistill.data.dataset import load_dataset
    from detdistill.data.splits import photo_groups, split_halves

    ds = load_dataset(TRACKS[track])
    halves = split_halves(ds.images("val"))
    if heldout:
        seen = set(photo_groups(calib))
        every = split_halves([*ds.images("train"), *ds.images("val")])["test"]
        halves["test"] = [f for f, photo in zip(every, photo_groups(every)) if photo not in seen]
    return halves


def score(models: list[str], int8: str, track: str, class_map: dict[int, int] | None,
          halves: dict[str, list[Path]], records: dict | None = None) -> dict:
    """mAP50-95 of each model on each of ``halves``, and the instruction set that computed it.

    ``records``: filled with each model's per-image test-half matches (for the interval of its drop)."""
    from detdistill.export.evaluate import evaluate
    from detdistill.runtime.cpu import instruction_set

    data = TRACKS[track]
    out = {"isa": instruction_set(), "maps": {}}
    for m in models:
        results = {h: evaluate(m, data, files=files, int8=int8, class_map=class_map,
                               keep_records=records is not None)
                   for h, files in halves.items()}
        out["maps"][m] = {h: r.map50_95 for h, r in results.items()}
        if records is not None:
            records[m] = results["test"].records
        print(f"  {Path(m).name} ({int8}, {out['isa']}): {out['maps'][m]}", file=sys.stderr, flush=True)
    return out


def calib_images(args: argparse.Namespace) -> list[Path]:
    """``--calib`` train images of the track from ``--calib-start`` (sorted by name)."""
    from detdistill.data.dataset import load_dataset

    return load_dataset(TRACKS[args.track]).images("train")[args.calib_start: args.calib_start + args.calib]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--track", choices=tuple(TRACKS), default="coco-mini")
    ap.add_argument("--weights", type=Path, default=TEACHER, help="the model (default: the COCO teacher fixture)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--schemes", default="u8s8,u8s7,u8u8", help="cpu-target weight schemes, or none")
    ap.add_argument("--calib", type=int, default=208, help="train images of the track to calibrate on")
    ap.add_argument("--calib-start", type=int, default=0, help="the first of them (sorted by name)")
    ap.add_argument("--methods", default="minmax", help="calibration methods (minmax, percentile, entropy)")
    ap.add_argument("--max-drop", type=float, help="also quantize each scheme (and the tensorrt target's default "
                    "placement) with the float-layer search to this mAP50-95 budget, measured on the tuning half "
                    "(the test half stays unseen)")
    ap.add_argument("--budget-on", choices=("tune", "train"), default="tune", help="where --max-drop is measured: "
                    "the tuning half, or the first 500 train images as the pipeline's export.int8.max_drop does")
    ap.add_argument("--tensorrt", action="store_true", help="also score the tensorrt target (s8s8, convs only), "
                    "Q/DQ on conv inputs and on conv inputs and outputs")
    ap.add_argument("--heldout", action="store_true", help="vehicles and the COCO teacher only: score the test "
                    "column on the test half of every vehicles image, train and val, less the calibration photos "
                    "(the teacher never trained on any of them)")
    ap.add_argument("--emulate", nargs="?", const="haswell", default="", metavar="CPUS",
                    help="also score on these emulated CPUs (tools/emulated_cpu.py; default haswell: AVX2 only)")
    ap.add_argument("--runs", type=int, default=100, help="timed runs per model (native)")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--score", nargs="+", help=argparse.SUPPRESS)  # internal: score these models, print JSON
    ap.add_argument("--class-map", type=json.loads, help=argparse.SUPPRESS)  # internal: with --score
    ap.add_argument("--records-out", type=Path, help=argparse.SUPPRESS)  # internal: --score's test-half matches
    args = ap.parse_args()
    if args.score:
        cmap = {int(k): v for k, v in args.class_map.items()} if args.class_map else None
        records: dict = {}
        halves = eval_sets(args.track, calib_images(args), args.heldout)
        scores = score(args.score, "kernels", args.track, cmap, halves, records)
        if args.records_out:
            args.records_out.write_bytes(pickle.dumps(records))
        print(json.dumps(scores))
        return
    from detdistill.data.dataset import load_dataset
    from detdistill.data.splits import photo_groups, write_half_yaml
    from detdistill.export.bench import MIN_RUNS, bench
    from detdistill.export.compare import paired_gain
    from detdistill.export.onnx_export import default_parity_images, export_onnx
    from detdistill.export.quantize import quantize_onnx
    from detdistill.export.evaluate import int8_kernels_for
    from detdistill.pipeline.deploy_stages import train_budget
    from detdistill.pipeline.measure_stages import teacher_score_map

    if args.runs < MIN_RUNS:  # checked before the long scoring, not after it
        ap.error(f"--runs must be >= {MIN_RUNS} for stable medians, got {args.runs}")
    emulate = [cpu for cpu in args.emulate.split(",") if cpu]
    for cpu in emulate:
        if why := emulated_cpu.ready(cpu):
            ap.error(f"--emulate {cpu}: {why}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_int8_cpu_"))
    work.mkdir(parents=True, exist_ok=True)
    if not args.weights.is_file():
        ap.error(f"--weights {args.weights} not found")
    pt = work / args.weights.name
    if pt.resolve() != args.weights.resolve():  # export writes beside the weights: work on a copy in --workdir
        shutil.copy(args.weights, pt)
    data = TRACKS[args.track]
    class_map = teacher_score_map(args.weights, data)[0]  # the model's ids -> the track's (None: the same classes)
    if args.heldout and (args.track != "vehicles" or args.weights.resolve() != TEACHER.resolve()
                         or args.budget_on == "train"):
        ap.error("--heldout scores on vehicles train images: only for the COCO teacher (it never trained on them) "
                 "on --track vehicles, and not with --budget-on train (the budget would be measured on them)")
    if args.max_drop is not None and class_map is not None:
        ap.error("--max-drop searches on the model's own classes: use a model trained on this track's classes "
                 "(or the teacher with --track coco-mini)")
    fp32 = work / f"{pt.stem}-{args.imgsz}.onnx"
    if not fp32.exists():
        export_onnx(pt, fp32, imgsz=args.imgsz, parity_images=default_parity_images())
    calib = calib_images(args)
    halves = eval_sets(args.track, calib, args.heldout)
    models = {"fp32": str(fp32)}
    tag = f"{pt.stem}-{args.track}-c{args.calib_start}+{len(calib)}"  # one file per model, track, calibration set

    def quantized(stem: str, **settings) -> str:
        """``work/<stem>.onnx``, quantized from the FP32 export with ``settings`` unless it is there already."""
        out = work / f"{stem}-{tag}.onnx"
        if not out.exists():
            r = quantize_onnx(fp32, calib, out, cache_dir=work, strict=False, **settings)
            if r.fp32_map is not None:  # the float-layer search ran
                low, high = r.drop_interval  # set wherever the search ran
                print(f"{stem}: float layers {r.float_layers} (on {r.budget_images} budget images {r.fp32_map:.3f} -> "
                      f"{r.int8_map:.3f}, drop 95% interval [{low:.3f}, {high:.3f}])", flush=True)
        return str(out)

    budget, search, drop_tag = {}, "", ""  # the float-layer search's settings, row name and file tag
    if args.max_drop is not None:
        on_train = args.budget_on == "train"
        budget = (train_budget(data, args.max_drop) if on_train
                  else {"max_drop": args.max_drop, "val_data": write_half_yaml(data, work / "sealed")})
        search = f"search {args.max_drop:g}" + (" on train images" if on_train else "")
        drop_tag = f"drop{args.max_drop:g}" + ("-train" if on_train else "")
    for conv_outputs in (False, True) if args.tensorrt else ():
        name = f"tensorrt, Q/DQ on conv inputs{' and outputs' if conv_outputs else ''}"
        models[name] = quantized(f"int8-tensorrt{'-outputs' if conv_outputs else ''}", target="tensorrt",
                                 conv_outputs=conv_outputs)
        if budget and not conv_outputs:
            models[f"{name}, {search}"] = quantized(f"int8-tensorrt-{drop_tag}", target="tensorrt", **budget)
    for scheme in [] if args.schemes == "none" else args.schemes.split(","):
        for method in args.methods.split(","):
            name = scheme if method == "minmax" else f"{scheme} {method}"
            stem = f"int8-{scheme}" if method == "minmax" else f"int8-{scheme}-{method}"
            models[name] = quantized(stem, target="cpu", scheme=scheme, method=method)
            if budget:
                models[f"{name}, {search}"] = quantized(f"{stem}-{drop_tag}", target="cpu", scheme=scheme,
                                                        method=method, **budget)
    test_records: dict = {}
    native = score(list(models.values()), "kernels", args.track, class_map, halves, test_records)
    sim_records: dict = {}
    simulated = score([models[s] for s in models if s != "fp32"], "simulate", args.track, class_map, halves,
                      sim_records)
    emulated, emulated_records = {}, {}  # CPU name -> its scores, its per-image test matches
    for cpu in emulate:
        print(f"scoring on an emulated {cpu} (slow)", file=sys.stderr, flush=True)
        python, env = emulated_cpu.python_command(cpu)
        records_file = work / f"records-{cpu}-{tag}.pkl"
        cmd = [*python, __file__, "--track", args.track, "--calib", str(args.calib), "--calib-start",
               str(args.calib_start), *(["--heldout"] * args.heldout), "--class-map", json.dumps(class_map or {}),
               "--records-out", str(records_file),
               "--score", *(m for name, m in models.items() if name != "fp32")]  # float kernels cannot saturate
        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
        if res.returncode:
            sys.exit(f"the emulated {cpu} run failed (its output is above)")
        emulated[cpu] = json.loads(res.stdout.strip().splitlines()[-1])
        emulated_records[cpu] = pickle.loads(records_file.read_bytes())
    val_images = Path(load_dataset(data).images("val")[0]).parent
    lat = {k: bench(v, val_images, runs=args.runs, device="cpu").median["inference"]
           for k, v in models.items()}
    isa, fp32_records = native["isa"], test_records[models["fp32"]]
    print(f"\n{args.weights.name} at {args.imgsz}, {len(calib)} {args.track} train images ({args.methods}), "
          f"head outputs in float; mAP50-95 on {args.track} val, tuning half / test "
          f"{'set: the test half of every image less the calibration photos' if args.heldout else 'half'} "
          f"({len(halves['tune'])} / {len(halves['test'])} images, {len(set(photo_groups(halves['test'])))} test "
          f"photos); this CPU: {isa}")
    head = f"| model | {isa} kernels | simulated (exact int32) |"
    head += "".join(f" {e['isa']} kernels (emulated {cpu}) |" for cpu, e in emulated.items())
    print(head + f" inference ms ({isa}) | vs FP32 | test drop [95% CI] ({isa} kernels; tensorrt: simulated) |")
    print("|---" * (6 + len(emulated)) + "|")
    for k, path in models.items():
        fmt = lambda d: f"{d['tune']:.3f} / {d['test']:.3f}"  # noqa: E731
        row = f"| {k} | {fmt(native['maps'][path])} | "
        row += (fmt(simulated["maps"][path]) if path in simulated["maps"] else "-") + " |"
        for e in emulated.values():
            row += f" {fmt(e['maps'][path]) if path in e['maps'] else 'not run'} |"
        int8_records = test_records if int8_kernels_for(path) else sim_records  # as `detdistill eval` scores it
        drop = "-" if k == "fp32" else str(paired_gain([fp32_records], [int8_records[path]]))
        print(row + f" {lat[k]:.1f} | {lat[k] / lat['fp32']:.2f}x | {drop} |")
    if emulated:  # each INT8 model's integer kernels on each emulated CPU against FP32 (run here: float is float)
        print(f"\ntest drop vs FP32 ({isa}) [95% CI], integer kernels of each emulated CPU:\n")
        print("| model |" + "".join(f" {e['isa']} (emulated {cpu}) |" for cpu, e in emulated.items()))
        print("|---" * (1 + len(emulated)) + "|")
        for k, path in models.items():
            if k != "fp32":
                print(f"| {k} |" + "".join(f" {paired_gain([fp32_records], [r[path]])} |"
                                           for r in emulated_records.values()))


if __name__ == "__main__":
    main()
