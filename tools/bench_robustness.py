"""Robustness of the runs of a ``tools/bench_distill.py`` folder: mAP50-95 of each run's ``best.pt`` (and of
the teacher) on the sealed test half (or, to choose a setting, ``--half tune``), clean and under each corruption of ``detdistill eval --corrupt``
(mean over severities 1-5), their mean mPC and rPC = mPC / clean (the COCO-C protocol, see
``detdistill.export.robustness``).

Example (after the vehicles benchmark, with road-augmented arms)::

    YOLO_OFFLINE=1 python tools/bench_robustness.py --out BENCH_OUT --student pruned0.5 --epochs 6 \\
        --methods none,default,default+road,default+road-clean --seeds 0 --teacher

Results are written as JSON lines (``robustness.jsonl`` in --out) and reused when the tool runs again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distill import TEACHER, TRACKS, add_folder_options, folder_runs, named_recipe  # noqa: E402  (shared)

from detdistill.data.splits import HALVES  # noqa: E402


def score_model(weights: Path, data: str, files: list[Path], imgsz: int, corrupt: str,
                class_map: dict[int, int] | None) -> dict:
    from detdistill.data.corruptions import parse_spec
    from detdistill.export.evaluate import evaluate, open_detector
    from detdistill.export.robustness import robustness

    det = open_detector(weights, imgsz=imgsz)

    def score(c):
        return evaluate(det, data, files=files, class_map=class_map, corrupt=c).map50_95

    r = robustness(score, parse_spec(corrupt), progress=lambda line: print(f"    {line}", flush=True))
    return {**r.as_dict(), "mpc": r.mpc, "rpc": r.rpc}


def rpc(rows: list[dict]) -> str:
    """Mean rPC in percent over ``rows``, "-" when a clean score is 0 (rPC undefined)."""
    values = [r["rpc"] for r in rows]
    return "-" if any(v != v for v in values) else f"{100 * statistics.mean(values):.1f}"  # NaN != NaN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_options(ap, track="vehicles", student="pruned0.5", epochs=6)
    ap.add_argument("--methods", default="none,default")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--teacher", action="store_true", help="also score the benchmark's teacher")
    ap.add_argument("--corrupt", default="all")
    ap.add_argument("--half", choices=HALVES, default="test",
                    help="the val half to score: tune to choose between settings, test to report (default)")
    args = ap.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from detdistill.data.corruptions import CorruptionError, parse_spec
    from detdistill.data.dataset import load_dataset
    from detdistill.data.splits import split_halves
    from detdistill.pipeline.measure_stages import teacher_score_map
    from detdistill.runtime.cpu import instruction_set

    out = args.out.resolve()
    try:
        parse_spec(args.corrupt)
    except CorruptionError as e:
        ap.error(f"--corrupt {args.corrupt!r}: {e}")
    if not (out / "results.jsonl").is_file():
        ap.error(f"--out {out} holds no results.jsonl: give the --out folder of a tools/bench_distill.py run")
    data = str(TRACKS.get(args.track, args.track))
    files = split_halves(load_dataset(data).images("val"))[args.half]
    rows = folder_runs(out, args.track, args.student, args.epochs, args.imgsz)
    methods = [named_recipe(m) for m in args.methods.split(",")]   # default -> the recipe it stands for
    wanted = [(m, int(s)) for m in methods for s in args.seeds.split(",")]
    jobs = [("teacher", -1, Path(TEACHER))] if args.teacher else []
    for m, s in wanted:
        if not any(r["method"] == m and r["seed"] == s for r in rows):
            print(f"{m} seed {s}: no finished run in {out}, skipped", flush=True)
            continue
        jobs.append((m, s, out / "runs" / f"{m}-s{s}" / "weights" / "best.pt"))
    if not jobs:
        ap.error(f"no finished run in {out} for methods {args.methods}, seeds {args.seeds} with --track {args.track} "
                 f"--student {args.student} --epochs {args.epochs} --imgsz {args.imgsz}: train them with "
                 "tools/bench_distill.py (the same options), or fix these")
    done_file = out / "robustness.jsonl"
    done = {(d["method"], d["seed"], d["corrupt"]): d for d in
            (json.loads(x) for x in done_file.read_text().splitlines())
            if d.get("half", "test") == args.half} if done_file.exists() else {}
    for i, (method, seed, weights) in enumerate(jobs, 1):
        if (method, seed, args.corrupt) in done:
            print(f"[{i}/{len(jobs)}] {method} seed {seed}: done earlier, reused", flush=True)
            continue
        print(f"[{i}/{len(jobs)}] {method} seed {seed} ({weights}) ...", flush=True)
        t0 = time.time()
        cmap = teacher_score_map(weights, data)[0] if method == "teacher" else None
        res = {"method": method, "seed": seed, "corrupt": args.corrupt, "half": args.half, "images": len(files),
               **score_model(weights, data, files, args.imgsz, args.corrupt, cmap)}
        with done_file.open("a") as f:
            f.write(json.dumps(res) + "\n")
        done[(method, seed, args.corrupt)] = res
        print(f"    clean {res['clean']:.3f}  mPC {res['mpc']:.3f}  in {time.time() - t0:.0f}s", flush=True)

    print(f"\n{args.track} {args.half} half ({len(files)} images), imgsz {args.imgsz}, corruptions {args.corrupt} "
          f"(a name alone: the mean over severities 1-5), CPU {instruction_set()}; mean over the seeds given:\n")
    names = None
    lines = []
    for method in (["teacher"] if args.teacher else []) + methods:
        rs = [d for (m, _, c), d in done.items() if m == method and c == args.corrupt
              and (m == "teacher" or str(d["seed"]) in args.seeds.split(","))]
        if not rs:
            continue
        names = names or list(rs[0]["per_corruption"])
        mean = lambda key: statistics.mean(r[key] for r in rs)  # noqa: E731
        per = [statistics.mean(r["per_corruption"][n] for r in rs) for n in names]
        lines.append(f"| {method} | {len(rs)} | {mean('clean'):.3f} | " + " | ".join(f"{v:.3f}" for v in per)
                     + f" | {mean('mpc'):.3f} | {100 * (mean('clean') - mean('mpc')):.1f} | {rpc(rs)} |")
    if names:
        print("| model | runs | clean | " + " | ".join(names) + " | mPC | clean - mPC (points) | rPC % |")
        print("|---" * (len(names) + 6) + "|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
