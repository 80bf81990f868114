"""tools/gpu_bench.py: the carried folder it prepares, the environment and the jobs it runs on the GPU machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import load_tool

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gpu_bench.py"


@pytest.fixture(scope="module")
def gpu_bench():
    return load_tool("gpu_bench")


def fake_download(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / "ultralytics-8.4.190-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    return [wheel]


def test_prepare_fills_a_folder_that_travels(gpu_bench, fixtures_dir, tmp_path):
    out = gpu_bench.prepare(tmp_path / "bench", fixtures_dir, download=fake_download)
    data = out / "fixtures" / "vehicles"
    assert (data / "data.yaml").is_file() and (out / "fixtures" / "weights" / "yolov8n-coco.pt").is_file()
    assert len(list((data / "train" / "images").iterdir())) == len(list((fixtures_dir / "vehicles" / "train" / "images").iterdir()))
    assert gpu_bench.folder_mib(out) < gpu_bench.LIMIT_MIB - 4
    # the polars stand-in imports, and reading results.csv back fails the way ultralytics tolerates
    code = "import polars\ntry:\n    polars.read_csv('results.csv')\nexcept ImportError as e:\n    print('stand-in', e)"
    res = subprocess.run([sys.executable, "-c", code], cwd=out / "stubs", capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("stand-in"), res.stderr


def test_prepare_names_missing_fixtures(gpu_bench, tmp_path):
    with pytest.raises(SystemExit, match="DETDISTILL_FIXTURES"):
        gpu_bench.prepare(tmp_path / "bench", tmp_path / "nowhere", download=fake_download)


def test_runs_are_dealt_to_jobs_once_each(gpu_bench):
    shares = gpu_bench.shares(["none", "ultralytics", "default", "at"], [0, 1], 3)
    runs = [r for share in shares for r in share]
    assert len(shares) == 3 and sorted(runs) == sorted((m, s) for m in ["none", "ultralytics", "default", "at"] for s in (0, 1))
    assert gpu_bench.shares(["none"], [0], 4) == [[("none", 0)]]


def test_environment_points_at_the_carried_fixtures(gpu_bench, tmp_path):
    env = gpu_bench.environment(tmp_path, tmp_path / "site")
    assert env["DETDISTILL_FIXTURES"] == str(tmp_path / "fixtures") and env["YOLO_OFFLINE"] == "1"
    assert str(tmp_path / "site") in env["PYTHONPATH"].split(":")


def test_run_refuses_an_unprepared_folder(tmp_path):
    res = subprocess.run([sys.executable, str(TOOL), "run", "--dir", str(tmp_path), "--dry-run"],
                         capture_output=True, text=True)
    assert res.returncode != 0 and "prepare" in res.stderr


def test_dry_run_lists_bench_distill_commands(gpu_bench, fixtures_dir, tmp_path):
    bench = gpu_bench.prepare(tmp_path / "bench", fixtures_dir, download=fake_download)
    res = subprocess.run([sys.executable, str(TOOL), "run", "--dir", str(bench), "--out", str(tmp_path / "out"),
                          "--methods", "none,default", "--seeds", "0,1", "--jobs", "2", "--dry-run"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    commands = [line for line in res.stdout.splitlines() if "bench_distill.py" in line]
    assert len(commands) == 2 and sum(c.count("--methods") for c in commands) == 4
    assert all("--imgsz 640" in c and "--epochs 40" in c and "--student yolov8n.yaml" in c for c in commands)


def test_bad_arguments_are_refused_before_any_work(gpu_bench, fixtures_dir, tmp_path):
    """A mistyped method or seed, an empty --dir (the repository root) or a file: one usage error each, before the
    GPU's time is spent (they were tracebacks, jobs that failed on the GPU, or wheels poured into the checkout)."""
    bench = gpu_bench.prepare(tmp_path / "bench", fixtures_dir, download=fake_download)
    for args, message in ((["prepare", "--dir", ""], "--dir is empty"),
                          (["prepare", "--dir", str(bench / "stubs" / "polars" / "__init__.py")], "is a file"),
                          (["prepare", "--python", "abc"], "--python 'abc': give"),
                          (["run", "--dir", str(bench), "--seeds", "x", "--dry-run"], "--seeds 'x'"),
                          (["run", "--dir", str(bench), "--jobs", "0", "--dry-run"], "--jobs must be at least 1"),
                          (["run", "--dir", str(bench), "--imgsz", "100", "--dry-run"], "multiple of 32"),
                          (["run", "--dir", str(bench), "--methods", "none,defualt", "--dry-run"],
                           "method 'defualt': 'defualt' is neither")):
        res = subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode != 0 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # nothing poured into the current folder


def _job(script: str) -> subprocess.Popen:
    return subprocess.Popen(script, shell=True, start_new_session=True)


def test_deadline_stops_a_job_and_its_children(gpu_bench, tmp_path):
    marker = tmp_path / "child-survived"
    # the job's child would write the marker after 3 s unless the whole session is stopped
    slow = _job(f"sh -c 'sleep 3 && touch {marker}' & wait")
    quick = _job("true")
    gpu_bench.wait_for_jobs([slow, quick], deadline=0.5, fail_fast=False, poll=0.2)
    assert slow.returncode != 0 and quick.returncode == 0
    time.sleep(3.5)
    assert not marker.exists()


def test_fail_fast_stops_the_others_at_the_first_failure(gpu_bench):
    failing, long = _job("exit 3"), _job("sleep 30")
    t0 = time.time()
    gpu_bench.wait_for_jobs([failing, long], deadline=None, fail_fast=True, poll=0.2)
    assert failing.returncode == 3 and long.returncode != 0 and time.time() - t0 < 10


def test_without_a_deadline_every_job_finishes(gpu_bench):
    jobs = [_job("sleep 0.5"), _job("true")]
    gpu_bench.wait_for_jobs(jobs, deadline=None, fail_fast=False, poll=0.2)
    assert [j.returncode for j in jobs] == [0, 0]


def test_preflight_names_a_package_that_does_not_import(gpu_bench, tmp_path):
    blocked = tmp_path / "blocked" / "faster_coco_eval"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('no faster_coco_eval for this Python')\n")
    env = dict(gpu_bench.environment(tmp_path, None))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "blocked"), env["PYTHONPATH"]])
    with pytest.raises(SystemExit, match="no faster_coco_eval for this Python.*prepare --python"):
        gpu_bench.preflight(env)
    gpu_bench.preflight(gpu_bench.environment(tmp_path, None))  # here every package imports


def test_unused_solver_files_leave_the_wheel_and_its_record(gpu_bench, tmp_path):
    wheel = tmp_path / "pulp-3.3.2-py3-none-any.whl"
    record = "pulp/__init__.py,sha256=a,1\npulp/solverdir/cbc/linux/i64/cbc,sha256=b,2\npulp-3.3.2.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pulp/__init__.py", "VERSION = '3.3.2'\n")
        z.writestr("pulp/solverdir/cbc/linux/i64/cbc", b"\0" * 1000)
        z.writestr("pulp-3.3.2.dist-info/RECORD", record)
    gpu_bench.without_files(wheel, "pulp/solverdir/")
    with zipfile.ZipFile(wheel) as z:
        assert z.namelist() == ["pulp/__init__.py", "pulp-3.3.2.dist-info/RECORD"]
        assert z.read("pulp/__init__.py") == b"VERSION = '3.3.2'\n"
        kept = "pulp/__init__.py,sha256=a,1\npulp-3.3.2.dist-info/RECORD,,\n"
        assert z.read("pulp-3.3.2.dist-info/RECORD").decode() == kept


def test_the_int8_arms_need_modelopt_and_int8_scoring_onnxslim(gpu_bench):
    assert "modelopt.torch.quantization" not in gpu_bench.needed_modules(["none", "ultralytics", "at"])
    assert "modelopt.torch.quantization" in gpu_bench.needed_modules(["none", "qad:at"])
    assert "modelopt.torch.quantization" in gpu_bench.needed_modules(["qat+road"])
    assert "onnxslim" in gpu_bench.needed_modules(["none"], int8=True)
    assert "onnxslim" not in gpu_bench.needed_modules(["none"])
