#!/usr/bin/env python
"""INT8 against FP32 inference time on this CPU, in alternating rounds (the speed targets of the cpu target).

Exports the teacher fixture at ``--imgsz`` (or takes ``--weights``, e.g. a pruned or distilled student),
quantizes it once per ``--schemes`` entry (calibrated on coco-mini train), then times FP32 and each INT8 model
with the code of ``detdistill bench`` (ONNX Runtime on the CPU, real coco-mini val frames), one after another,
for ``--rounds`` rounds. Alternating spreads a slow spell of a shared machine over every model alike; the
ratio INT8 / FP32 is printed per round, with its range over the rounds. Run it on an otherwise idle machine.
Each model runs a whole block of frames warm, as on a device: taking turns frame by frame would evict each
model's weights from the caches between calls, which costs the four times larger FP32 weights more.

    YOLO_OFFLINE=1 python tools/bench_int8_speed.py --imgsz 320 --schemes u8s7,u8s8 --rounds 5 --runs 300
    YOLO_OFFLINE=1 python tools/bench_int8_speed.py --weights pruned.pt --imgsz 320 --schemes u8s7
    YOLO_OFFLINE=1 python tools/bench_int8_speed.py --imgsz 320 --schemes u8s7 --profile   # where the time goes

``--profile`` adds, per model, the milliseconds per inference of each kind of operator as ONNX Runtime's
profiler records them after its graph optimisations (so fused kernels appear under their own names), and per
layer of the model (``model.N``) each INT8 model's time against FP32's: which layers, if any, INT8 makes faster.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

from detdistill.export.bench import bench  # noqa: E402
from detdistill.export.onnx_export import default_parity_images, export_onnx  # noqa: E402
from detdistill.export.quantize import quantize_onnx  # noqa: E402
from bench_demo_pipeline import cpu_info  # noqa: E402  (tools/: CPU model, instruction set, cores)

FIX = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=FIX / "weights" / "yolov8n-coco.pt")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--schemes", default="u8s7", help="cpu-target weight schemes, comma separated")
    ap.add_argument("--calib", type=int, default=208, help="coco-mini train images to calibrate on")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300, help="timed runs per model per round")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--profile", action="store_true", help="also print each model's time per operator kind")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="int8-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    pt = work / args.weights.name
    shutil.copy(args.weights, pt)  # the fixtures folder is read-only; always the file given, never a stale copy
    fp32 = export_onnx(pt, work / f"{pt.stem}-{args.imgsz}.onnx", imgsz=args.imgsz,
                       parity_images=default_parity_images())
    models = {"FP32": fp32}
    calib = FIX / "coco-mini" / "images" / "train"
    for scheme in args.schemes.split(","):
        models[scheme] = quantize_onnx(fp32, calib, work / f"{fp32.stem}.{scheme}.onnx", target="cpu", scheme=scheme,
                                       num_images=args.calib).path
    frames = FIX / "coco-mini" / "images" / "val"
    cpu = cpu_info()
    print(f"{cpu['cpus']}-core {cpu['model']}, instruction set {cpu['isa']}; {args.weights.name} at {args.imgsz}; "
          f"{args.rounds} rounds of {args.runs} runs per model; median inference ms (ONNX Runtime, CPU)", flush=True)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name, path in models.items():
            times[name].append(bench(path, frames, runs=args.runs, device="cpu").median["inference"])
        row = "  ".join(f"{name} {times[name][-1]:.2f}" for name in models)
        ratios = "  ".join(f"{name}/FP32 {times[name][-1] / times['FP32'][-1]:.2f}x" for name in models
                           if name != "FP32")
        print(f"round {r + 1}/{args.rounds}: {row}  |  {ratios}", flush=True)
    if args.profile:
        print("\nms per inference by operator kind (ONNX Runtime's profiler; the models take turns in 5 blocks of 10 "
              "runs, after 10 warm-up runs each):")
        profiles = node_ms(models, work)
        for name, nodes in profiles.items():
            print(f"{name}: " + ", ".join(f"{op} {ms:.2f}" for op, ms in by_key(nodes, 1)))
        print("\nms per inference by layer (nodes outside model.N: 'other')")
        layers = {name: dict(by_key(nodes, 0)) for name, nodes in profiles.items()}
        print(f"{'layer':<9}" + "".join(f"{name:>16}" for name in models))
        for layer in sorted(set().union(*layers.values()), key=layer_order):
            fp32_ms = layers["FP32"].get(layer, 0.0)
            cells = [f"{fp32_ms:16.2f}"]
            for name in models:
                if name != "FP32":
                    ms = layers[name].get(layer, 0.0)
                    cells.append(f"{ms:9.2f} ({ms / fp32_ms:.2f}x)" if fp32_ms else f"{ms:16.2f}")
            print(f"{layer:<9}" + "".join(cells))
    print("\nmodel   median ms over rounds [min, max]   vs FP32 per round [min, max]")
    for name, ms in times.items():
        ratio = [m / f for m, f in zip(ms, times["FP32"])]
        mid = statistics.median(ms)
        ratio_text = "-" if name == "FP32" else f"{statistics.median(ratio):.2f}x [{min(ratio):.2f}, {max(ratio):.2f}]"
        print(f"{name:<7} {mid:8.2f} [{min(ms):.2f}, {max(ms):.2f}]{'':10}{ratio_text}")


def node_ms(models: dict[str, Path], work: Path, rounds: int = 5, runs: int = 10) -> dict[str, collections.Counter]:
    """Milliseconds per inference of each model (on a gray image) by (layer, operator kind): the layer is the
    ``model.N`` in the node's name (ultralytics' module index), ``other`` where there is none. The models take turns
    in blocks of ``runs`` for ``rounds`` rounds, after a warm-up block each, so that a slow spell of a shared machine
    falls on all of them alike."""
    import numpy as np
    import onnxruntime as ort

    sessions, feeds, warm_runs = {}, {}, 10
    for name, path in models.items():
        opts = ort.SessionOptions()
        opts.enable_profiling, opts.profile_file_prefix = True, str(work / f"profile-{path.stem}")
        sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shape = sessions[name].get_inputs()[0].shape
        feeds[name] = {sessions[name].get_inputs()[0].name: np.full(shape, 114 / 255, np.float32)}
    for block in range(rounds + 1):  # block 0 warms each model up and is not counted
        for name, session in sessions.items():
            for _ in range(warm_runs if block == 0 else runs):
                session.run(None, feeds[name])
    totals = {}
    for name, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        start = sorted(e["ts"] for e in events if e.get("name") == "model_run")[warm_runs]  # after the warm-up
        total: collections.Counter = collections.Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
                layer = re.search(r"model\.\d+", e["name"])
                total[layer.group(0) if layer else "other", e["args"]["op_name"]] += e["dur"] / 1000 / (rounds * runs)
        totals[name] = total
    return totals


def by_key(nodes: collections.Counter, index: int) -> list[tuple[str, float]]:
    """``nodes`` summed by layer (``index`` 0) or by operator kind (1), largest first."""
    total: collections.Counter = collections.Counter()
    for key, ms in nodes.items():
        total[key[index]] += ms
    return total.most_common()


def layer_order(layer: str) -> tuple[int, int]:
    """model.0, model.1, ..., model.22, then other."""
    return (1, 0) if layer == "other" else (0, int(layer.split(".")[1]))


if __name__ == "__main__":
    main()
