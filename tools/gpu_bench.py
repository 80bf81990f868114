"""The GPU distillation benchmark, ready for an offline machine that has only torch.

Two steps:

``prepare`` (here, with pip's package index in reach) fills a git-ignored folder (``.gpu_bench`` by
default, at most 64 MiB) with what the GPU machine lacks: the ultralytics, ultralytics-thop and faster-coco-eval
wheels (``--no-deps``: torch, OpenCV, numpy, matplotlib and friends are expected there; ``--python`` names the
GPU machine's Python, 3.12 by default, for the compiled one), a stand-in for polars
(ultralytics' trainer imports it only to read results.csv back), the vehicles data and the COCO teacher::

    python tools/gpu_bench.py prepare

``run`` (on the GPU machine, from the repository root) installs the wheels into a private folder and runs
``tools/bench_distill.py`` on the vehicles track under the sealed protocol: imgsz 640, a yolov8n student
from scratch, 40 epochs, batch 32, with no KD, ultralytics' built-in distillation and detdistill recipes.
Several runs share the GPU at once (``--jobs``; the data loaders share the CPU cores), then one summary
gives tuning and test mAP per method and each test gain with its bootstrap interval::

    python tools/gpu_bench.py run --methods none,ultralytics,default,logit-box --seeds 0 --out results/

``--deadline SECONDS`` fits the run into a leased machine's time: the jobs still running then are stopped, and
the runs that finished are summarized (jobs take their runs seed by seed, so a short lease still gives every
method its first seed). ``--fail-fast`` stops everything at the first failed job.

Nothing is downloaded in ``run``. The ``qad`` and ``qat`` arms and ``run --int8`` need ``prepare --qad`` (ModelOpt,
onnxslim); a package the runs need that does not import there stops ``run`` before any training, naming the fix.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DETDISTILL_FIXTURES", ROOT.parent / "shared" / "fixtures"))
DEFAULT_DIR = ROOT / ".gpu_bench"
WHEELS = ("ultralytics==8.4.190", "ultralytics-thop==2.2.3")
# compiled: fetched for the GPU machine's Python and x86-64 Linux (faster-coco-eval scores every run)
BINARY_WHEELS = ("faster-coco-eval==1.8.0",)
GPU_PYTHON = "3.12"  # the GPU machine's Python
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# prepare --qad: onnxslim (every INT8 export), ModelOpt (the qad and qat arms) and what it imports that the GPU
# machine lacks
QAD_WHEELS = ("onnxslim==0.1.98", "nvidia-modelopt==0.47.0", "pydantic==2.13.4", "annotated-types==0.8.0",
              "typing-inspection==0.4.5", "omegaconf==2.4.0", "antlr4-python3-runtime==4.13.2", "pulp==3.3.2")
QAD_BINARY_WHEELS = ("pydantic-core==2.46.4",)
UNUSED_FILES = {"pulp": "pulp/solverdir/"}  # PuLP's bundled CBC solvers (15 MiB): ModelOpt imports PuLP, QAD runs no LP
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # this machine's
NEEDED = ("ultralytics", "faster_coco_eval", "detdistill")  # imported by every run
INT8_ARMS = ("qad", "qad-self", "qat")  # methods that need ModelOpt
LIMIT_MIB = 64  # the most the carried folder and the repository may hold together on their way to the GPU machine
POLARS_STANDIN = '''"""Stand-in for polars on a machine without it: ultralytics reads results.csv back with it only."""


def read_csv(*args, **kwargs):
    raise ImportError("polars is a stand-in here (tools/gpu_bench.py); results.csv is not read back")
'''


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def without_files(wheel: Path, prefix: str) -> None:
    """Rewrite ``wheel`` without its members under ``prefix`` (and their RECORD lines)."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith(prefix):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.splitlines(keepends=True)
                data = b"".join(line for line in lines if not line.startswith(prefix.encode()))
            dst.writestr(item, data)
    tmp.replace(wheel)


def download_wheels(dest: Path, python: str = GPU_PYTHON, qad: bool = False) -> list[Path]:
    """The wheels the GPU machine lacks, without their dependencies: the pure-Python ones, and the compiled ones
    for that machine's ``python`` on x86-64 Linux; with ``qad``, ModelOpt's too."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest)]
    subprocess.run([*pip, *WHEELS, *(QAD_WHEELS if qad else ())], check=True)
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", tag)]
    subprocess.run([*pip, "--python-version", python, "--implementation", "cp", *platforms, *BINARY_WHEELS,
                    *(QAD_BINARY_WHEELS if qad else ())], check=True)
    for name, prefix in UNUSED_FILES.items():
        for wheel in dest.glob(f"{name}-*.whl"):
            without_files(wheel, prefix)
    return sorted(dest.glob("*.whl"))


def prepare(out: Path, fixtures: Path = FIXTURES, download=download_wheels) -> Path:
    """Fill ``out`` with wheels, the polars stand-in, the vehicles data and the teacher; return ``out``."""
    data, teacher = fixtures / "vehicles", fixtures / "weights" / "yolov8n-coco.pt"
    for need in (data / "data.yaml", teacher):
        if not need.is_file():
            raise SystemExit(f"error: {need} is missing: set DETDISTILL_FIXTURES to the folder holding vehicles/ "
                             "and weights/yolov8n-coco.pt")
    out.mkdir(parents=True, exist_ok=True)
    download(out / "wheels")
    (out / "stubs" / "polars").mkdir(parents=True, exist_ok=True)
    (out / "stubs" / "polars" / "__init__.py").write_text(POLARS_STANDIN)
    fx = out / "fixtures"
    if (fx / "vehicles").exists():
        shutil.rmtree(fx / "vehicles")  # a fresh copy (ultralytics writes label caches beside the labels)
    shutil.copytree(data, fx / "vehicles", ignore=shutil.ignore_patterns("*.cache"))
    (fx / "weights").mkdir(parents=True, exist_ok=True)
    shutil.copy2(teacher, fx / "weights" / teacher.name)
    size = folder_mib(out)
    if size > LIMIT_MIB - 4:  # the repository travels too
        raise SystemExit(f"error: {out} holds {size:.1f} MiB; the GPU machine takes at most {LIMIT_MIB} MiB "
                         "with the repository")
    return out


def bench_argv(methods: list[str], seeds: list[int], args: argparse.Namespace) -> list[str]:
    """The ``tools/bench_distill.py`` command of one share of the runs."""
    return [sys.executable, str(ROOT / "tools" / "bench_distill.py"), "--track", "vehicles",
            "--student", args.student, "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
            "--batch", str(args.batch), "--workers", str(args.workers), "--close-mosaic", str(args.close_mosaic),
            "--device", args.device, "--methods", ",".join(methods), "--seeds", ",".join(map(str, seeds)),
            *(["--int8"] if args.int8 else []),
            "--bootstrap", str(args.bootstrap), "--out", str(args.out)]


def environment(bench_dir: Path, site: Path | None) -> dict[str, str]:
    """Offline ultralytics, the carried fixtures, and the wheels, stand-in and repository on the path."""
    env = dict(os.environ, YOLO_OFFLINE="1", DETDISTILL_FIXTURES=str(bench_dir / "fixtures"), PYTHONUNBUFFERED="1")
    paths = [str(ROOT)] + ([str(site)] if site else [])
    try:
        import polars  # noqa: F401  (the real one, where installed, wins)
    except ImportError:
        paths.append(str(bench_dir / "stubs"))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def needed_modules(methods: list[str], int8: bool = False) -> tuple[str, ...]:
    """The packages the runs of ``methods`` import: every run's, ModelOpt for the qad and qat arms, onnxslim where
    runs are scored in INT8 (``int8``)."""
    quantized = any(m.partition("+")[0].split(":")[0] in INT8_ARMS for m in methods)
    return NEEDED + (("modelopt.torch.quantization",) if quantized else ()) + (("onnxslim",) if int8 else ())


def import_error(env: dict[str, str], modules: tuple[str, ...]) -> str | None:
    """The last line of the error importing ``modules`` in a Python with ``env``; None where all import."""
    check = subprocess.run([sys.executable, "-c", f"import {', '.join(modules)}"], env=env, capture_output=True,
                           text=True)
    return (check.stderr.strip().splitlines() or ["?"])[-1] if check.returncode else None


def preflight(env: dict[str, str], modules: tuple[str, ...] = NEEDED) -> None:
    """Fail before any training when a package the runs need does not import there."""
    last = import_error(env, modules)
    if last:
        qad = " --qad" if any(m.startswith(("modelopt", "onnxslim")) for m in modules) else ""
        raise SystemExit(f"error: {last}: the carried folder lacks a package these runs need, or its wheels do not "
                         f"fit this machine's Python {PYTHON}: run `python tools/gpu_bench.py prepare --python "
                         f"{PYTHON}{qad}` again")


def install_wheels(bench_dir: Path, site: Path) -> None:
    wheels = sorted((bench_dir / "wheels").glob("*.whl"))
    if not wheels:
        raise SystemExit(f"error: no wheels in {bench_dir / 'wheels'}: run `python tools/gpu_bench.py prepare` first")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                           "--target", str(site), *map(str, wheels)])
    if done.returncode:
        raise SystemExit(f"error: the wheels in {bench_dir / 'wheels'} do not install on this machine's Python "
                         f"{PYTHON}: run `python tools/gpu_bench.py prepare --python {PYTHON}` again")


def shares(methods: list[str], seeds: list[int], jobs: int) -> list[list[tuple[str, int]]]:
    """(method, seed) runs dealt round-robin to ``jobs`` concurrent processes."""
    runs = [(m, s) for s in seeds for m in methods]
    return [runs[i::jobs] for i in range(min(jobs, len(runs)))]


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop every job still running, with all its processes."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_for_jobs(procs: list[subprocess.Popen], deadline: float | None, fail_fast: bool, poll: float = 15) -> None:
    """Wait for the jobs, printing progress. Past ``deadline`` seconds, or at the first failed job with
    ``fail_fast``, the jobs still running are stopped: their unfinished runs are summarized as not run."""
    t0 = time.time()
    while any(p.poll() is None for p in procs):
        time.sleep(poll)
        elapsed, running = time.time() - t0, sum(p.poll() is None for p in procs)
        print(f"  {elapsed:.0f}s: {running} job(s) running", flush=True)
        failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
        if fail_fast and failed:
            print(f"  job(s) {', '.join(map(str, failed))} failed: stopping the others (--fail-fast)", flush=True)
            return stop(procs)
        if deadline is not None and elapsed > deadline and running:
            print(f"  past the {deadline:.0f}s deadline: stopping {running} job(s)", flush=True)
            return stop(procs)


def run(args: argparse.Namespace) -> int:
    bench_dir = args.dir.resolve()
    if not (bench_dir / "fixtures" / "vehicles" / "data.yaml").is_file():
        raise SystemExit(f"error: {bench_dir} is not prepared: run `python tools/gpu_bench.py prepare` first")
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    modules = needed_modules(methods, args.int8)
    env = environment(bench_dir, None)
    if import_error(env, modules):  # this machine lacks some: install the carried wheels, then they must import
        install_wheels(bench_dir, Path(args.site))
        env = environment(bench_dir, Path(args.site))
        preflight(env, modules)
    check = subprocess.run(bench_argv(methods, seeds, args) + ["--check"], env=env, capture_output=True, text=True)
    if check.returncode:  # a mistyped method fails here, before the jobs take the GPU's time
        raise SystemExit(check.stderr.strip().splitlines()[-1])
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    for i, share in enumerate(shares(methods, seeds, args.jobs)):
        # each process gets one method and one seed per bench_distill call, in sequence
        cmds = [bench_argv([m], [s], args) for m, s in share]
        script = " && ".join(subprocess.list2cmdline(c) for c in cmds) if cmds else "true"
        log = args.out / f"job{i}.log"
        print(f"job {i}: {', '.join(f'{m} seed {s}' for m, s in share)} -> {log}", flush=True)
        if not args.dry_run:
            # a session of its own: stopping the job stops its runs and their data loaders too
            procs.append(subprocess.Popen(script, shell=True, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                          start_new_session=True))
            if i == 0:
                time.sleep(args.stagger)  # the first run writes the sealed split and the label caches
        else:
            print("  " + script)
    if args.dry_run:
        return 0
    wait_for_jobs(procs, args.deadline, args.fail_fast)
    summary = subprocess.run(bench_argv(methods, seeds, args) + ["--summary-only"], env=env, capture_output=True,
                             text=True)  # a run that failed in its job is reported, not trained again here
    (args.out / "summary.txt").write_text(summary.stdout + summary.stderr)
    print(summary.stdout[-6000:] + summary.stderr[-2000:])
    return 1 if any(p.returncode for p in procs) else summary.returncode  # a job failed or was stopped: 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="fill the carried folder (here, with pip's index in reach)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                   help=f"the folder to fill and carry (default {DEFAULT_DIR.name}, git-ignored)")
    p.add_argument("--python", default=GPU_PYTHON, help="the GPU machine's Python version, e.g. 3.12, for compiled "
                   "wheels")
    p.add_argument("--qad", action="store_true", help="also carry what INT8 needs: onnxslim (run --int8) and "
                   "ModelOpt with its dependencies (the qad and qat arms)")
    r = sub.add_parser("run", help="run the benchmark (on the GPU machine)")
    r.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the folder `prepare` filled")
    r.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_bench", help="where runs, logs and the summary go")
    r.add_argument("--methods", default="none,ultralytics,default,logit-box",
                   help="comma-separated, as tools/bench_distill.py --methods takes them")
    r.add_argument("--seeds", default="0", help="comma-separated integers")
    r.add_argument("--student", default="yolov8n.yaml", help="model YAML trained from scratch (or a .pt)")
    r.add_argument("--epochs", type=int, default=40)
    r.add_argument("--imgsz", type=int, default=640, help="a multiple of 32")
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--workers", type=int, default=6, help="data-loader workers per run")
    r.add_argument("--close-mosaic", type=int, default=10, help="last epochs without mosaic")
    r.add_argument("--device", default="0", help="CUDA device")
    r.add_argument("--jobs", type=int, default=2, help="runs sharing the GPU at once")
    r.add_argument("--stagger", type=float, default=20.0, help="seconds between starting the first job and the others")
    r.add_argument("--deadline", type=float, help="seconds after which the jobs still running are stopped and the "
                   "finished runs summarized (a leased GPU's time limit)")
    r.add_argument("--int8", action="store_true", help="also score every run in INT8 (bench_distill.py --int8; "
                   "needs `prepare --qad`, as the qad and qat arms do)")
    r.add_argument("--fail-fast", action="store_true", help="stop every job as soon as one fails")
    r.add_argument("--bootstrap", type=int, default=1000, help="bootstrap samples per interval")
    r.add_argument("--site", default="/tmp/detdistill-site", help="where the wheels are installed")
    r.add_argument("--dry-run", action="store_true", help="print the jobs' commands only")
    args = ap.parse_args()
    if not str(args.dir).strip() or str(args.dir) == ".":
        ap.error("--dir is empty: give the folder to fill and carry (default .gpu_bench); the current folder would "
                 "fill the repository with wheels and data")
    if args.dir.exists() and not args.dir.is_dir():
        ap.error(f"--dir {args.dir} is a file: give a folder")
    if args.step == "prepare" and not re.fullmatch(r"3\.\d{1,2}", args.python):
        ap.error(f"--python {args.python!r}: give the GPU machine's Python version as 3.N, e.g. {GPU_PYTHON}")
    if args.step == "run":
        if not all(s.strip().isdigit() for s in args.seeds.split(",")):
            ap.error(f"--seeds {args.seeds!r}: give integers separated by commas, e.g. 0,1")
        for name in ("jobs", "epochs", "batch"):
            if getattr(args, name) < 1:
                ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
        if args.imgsz < 32 or args.imgsz % 32:
            ap.error(f"--imgsz must be a multiple of 32, got {args.imgsz}")
    if args.step == "prepare":
        out = prepare(args.dir.resolve(), download=functools.partial(download_wheels, python=args.python,
                                                                     qad=args.qad))
        rel = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
        print(f"{out}: {folder_mib(out):.1f} MiB\n"
              f"on the GPU machine, from the repository root (carry {rel}):\n"
              f"  python tools/gpu_bench.py run --dir {rel}")
        return
    sys.exit(run(args))


if __name__ == "__main__":
    main()
