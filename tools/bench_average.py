#!/usr/bin/env python
"""Weight averages of two arms of a ``tools/bench_distill.py`` folder (``detdistill average``), clean and corrupted.

For each seed, the two arms' ``best.pt`` (e.g. ``at`` and ``at+road-clean``: one student distilled without and
with road augmentation, from the same start) are averaged at each ``--weights`` share of the second (0: the first
arm itself, 1: the second), and every model is scored on one sealed half of the track's val set, clean and under
each corruption of ``--corrupt`` (each at a given severity). The summary gives, per weight, the mean over seeds of
clean mAP50-95, mPC (mean over the corruptions) and rPC = mPC / clean, and the clean and mPC gains over the first
arm, paired by seed, with 95% bootstrap intervals over the half's photos (for mPC each sample redraws the photos
of every corruption alike). Choose the weight with ``--half tune``, report it with ``--half test``.

    YOLO_OFFLINE=1 python tools/bench_average.py --out BENCH_OUT --track coco-mini --student pruned0.65 \\
        --epochs 10 --first at --second at+road-clean --weights 0,0.25,0.5,0.75,1 --seeds 0,1,2,3 --half tune

The averages are written to ``--out``/averages, the scores (with their per-image matches) cached beside them, both
named by the contents of the models they come from.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distill import TRACKS, add_folder_options, folder_runs  # noqa: E402  (shared)

from detdistill.data.splits import HALVES  # noqa: E402

SEVERITY_3 = "fog:3,rain:3,snow:3,glare:3,dark:3,motion_blur:3,noise:3,jpeg:3"


def model_path(out: Path, first: str, second: str, weight: float, seed: int) -> Path:
    """The first arm's (0) or second arm's (1) best.pt, else their average at ``weight`` (written once)."""
    from detdistill.hashing import file_sha256
    from detdistill.weight_average import average_checkpoints

    if weight in (0, 1):
        return out / "runs" / f"{(first, second)[int(weight)]}-s{seed}" / "weights" / "best.pt"
    ends = [model_path(out, first, second, w, seed) for w in (0, 1)]
    tags = "-".join(file_sha256(e)[:12] for e in ends)  # retrained arms average again
    path = out / "averages" / f"{first}+{second}-w{weight:g}-s{seed}-{tags}.pt"
    if not path.is_file():
        print(f"    averaging {ends[0].parent.parent.name} and {ends[1].parent.parent.name} at {weight:g}: "
              f"cosine {average_checkpoints(*ends, weight, path).cosine:.4f}", flush=True)
    return path


def scores(path: Path, cache: Path, data: str, files: list[Path], imgsz: int,
           conditions: list[tuple[str, int]]) -> dict:
    """``{None: clean EvalResult, (name, severity): corrupted EvalResult}`` of ``path``, cached in ``cache``."""
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    from detdistill.export.evaluate import evaluate, open_detector

    det = open_detector(path, imgsz=imgsz)
    result = {c: evaluate(det, data, files=files, corrupt=c, keep_records=True) for c in [None, *conditions]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(result))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_options(ap, track="coco-mini", student="pruned0.65", epochs=10)
    ap.add_argument("--first", default="at", help="the arm at weight 0 (the gains are against it)")
    ap.add_argument("--second", default="at+road-clean", help="the arm at weight 1")
    ap.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="shares of the second arm")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--corrupt", default=SEVERITY_3, help="corruptions, each with its severity (name:1-5)")
    ap.add_argument("--half", choices=HALVES, default="test",
                    help="the val half to score: tune to choose the weight, test to report (default)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from detdistill.data.corruptions import CorruptionError, parse_spec
    from detdistill.data.dataset import load_dataset
    from detdistill.data.splits import split_halves
    from detdistill.export.compare import paired_gain
    from detdistill.hashing import file_sha256
    from detdistill.runtime.cpu import instruction_set

    out = args.out.resolve()
    try:
        conditions = parse_spec(args.corrupt)
    except CorruptionError as e:
        ap.error(f"--corrupt {args.corrupt!r}: {e}")
    if any(severity is None for _, severity in conditions):
        ap.error(f"--corrupt {args.corrupt!r}: give each corruption its severity (e.g. fog:3)")
    weights = [float(w) for w in args.weights.split(",")]
    if any(not 0 <= w <= 1 for w in weights) or 0 not in weights:
        ap.error(f"--weights {args.weights}: shares from 0 to 1, 0 among them (the gains are against it)")
    seeds = [int(s) for s in args.seeds.split(",")]
    finished = {(r["method"], r["seed"]) for r in folder_runs(out, args.track, args.student, args.epochs, args.imgsz)}
    missing = [f"{m} seed {s}" for s in seeds for m in (args.first, args.second) if (m, s) not in finished]
    if missing:
        ap.error(f"no finished run in {out} for {', '.join(missing)} (--track {args.track} --student {args.student} "
                 f"--epochs {args.epochs} --imgsz {args.imgsz}): train them with tools/bench_distill.py first")
    data = str(TRACKS.get(args.track, args.track))
    files = split_halves(load_dataset(data).images("val"))[args.half]

    results: dict[tuple[float, int], dict] = {}
    jobs = [(w, s) for w in weights for s in seeds]
    for i, (w, s) in enumerate(jobs, 1):
        t0 = time.time()
        path = model_path(out, args.first, args.second, w, s)
        cache = out / "averages" / "scores" / f"{file_sha256(path)[:12]}-{args.half}-{args.imgsz}-{args.corrupt}.pkl"
        results[w, s] = r = scores(path, cache, data, files, args.imgsz, conditions)
        mpc = statistics.mean(r[c].map50_95 for c in conditions)
        print(f"[{i}/{len(jobs)}] weight {w:g} seed {s}: clean {r[None].map50_95:.4f}  mPC {mpc:.4f}  "
              f"({time.time() - t0:.0f}s)", flush=True)

    print(f"\n{args.track} {args.half} half ({len(files)} images), {args.first} (weight 0) and {args.second} (1) "
          f"averaged, seeds {args.seeds}, corruptions {args.corrupt}, CPU {instruction_set()}; means over seeds, "
          f"gains against weight 0 with 95% paired bootstrap intervals over photos ({args.bootstrap} samples):\n")
    print("| weight | clean | mPC | rPC | clean gain [95% CI] | mPC gain [95% CI] |")
    print("|---|---|---|---|---|---|")
    for w in weights:
        clean = statistics.mean(results[w, s][None].map50_95 for s in seeds)
        mpc = statistics.mean(results[w, s][c].map50_95 for s in seeds for c in conditions)
        if w == 0:
            gains = "- | -"
        else:
            cg = paired_gain([results[w, s][None].records for s in seeds],
                             [results[0, s][None].records for s in seeds], samples=args.bootstrap)
            mg = paired_gain([results[w, s][c].records for s in seeds for c in conditions],
                             [results[0, s][c].records for s in seeds for c in conditions], samples=args.bootstrap)
            gains = f"{cg} | {mg}"
        print(f"| {w:g} | {clean:.3f} | {mpc:.3f} | {100 * mpc / clean:.0f}% | {gains} |")


if __name__ == "__main__":
    main()
