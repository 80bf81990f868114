"""The registry of known teacher checkpoints and resolve_weights: fast, offline, never touches the network."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from detdistill.registry import weights as W
from detdistill.registry.weights import ChecksumError, WeightsError, file_sha256, get_entry, list_registry, resolve_weights

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_SHA = "1fbdcda066f64b42309ae9272959a1127c9bed777550409b28623554c77e2a6e"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real weights folder can leak in: empty cwd, no DETDISTILL_WEIGHTS, ultralytics' folder in tmp,
    downloads off, and any download attempt fails the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(W.ENV_DIR, raising=False)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setattr(W, "_ultralytics_weights_dir", lambda: tmp_path / "ultra-weights")

    def no_network(url, dest):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(W, "_download", no_network)


@pytest.fixture
def teacher_dir(tmp_path, teacher_pt) -> Path:
    d = tmp_path / "mine"
    d.mkdir()
    shutil.copyfile(teacher_pt, d / "yolov8n-coco.pt")
    return d


# --------------------------------------------------------------------------------------------- registry


def test_registry_entries_are_complete():
    entries = list_registry()
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    assert {"yolov8n", "yolov8s", "yolov8m", "yolo11n", "yolo11s", "yolo26n", "yolov8n-coco"} <= set(names)
    url_re = re.compile(r"^https://github\.com/ultralytics/assets/releases/download/v\d+\.\d+\.\d+/(?P<file>[\w.-]+)$")
    for e in entries:
        assert e.name and e.family and e.task == "detect" and e.licence == "AGPL-3.0"
        assert e.file.endswith(".pt") and Path(e.file).stem == e.name
        assert e.classes == "coco80" and e.num_classes == 80
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        assert (e.params_m is None or e.params_m > 0) and (e.gflops is None or e.gflops > 0)
        if e.url:
            m = url_re.match(e.url)
            assert m and m["file"] == e.file, e.url
        else:
            assert e.fixture_path and e.fixture_path.endswith(e.file), e.source


def test_registry_urls_are_ultralytics_assets():
    """Every download is an asset ultralytics itself knows, from the release its downloader uses."""
    downloads = pytest.importorskip("ultralytics.utils.downloads")
    import inspect

    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    for e in list_registry():
        if e.url:
            assert e.file in downloads.GITHUB_ASSETS_NAMES
            assert f"/download/{release}/" in e.url


def test_fixture_entry_is_pinned(teacher_pt):
    e = get_entry("yolov8n-coco")
    assert e.sha256 == FIXTURE_SHA == file_sha256(teacher_pt)
    assert e.url is None and (ROOT / e.fixture_path).resolve() == teacher_pt.resolve()


def test_get_entry_accepts_file_names_and_case():
    assert get_entry("yolov8s.pt").name == "yolov8s"
    assert get_entry("YOLO11n").name == "yolo11n"
    assert get_entry("yolov9000") is None


def test_readme_lists_every_entry():
    readme = (ROOT / "weights" / "README.md").read_text()
    for e in list_registry():
        assert f"`{e.name}`" in readme and (e.url is None or e.url in readme), e.name


@pytest.mark.parametrize("bad, match", [
    ("- {name: a, file: a.pt, source: 'https://x/a.pt', family: f, licence: L, classes: coco81}", "classes"),
    ("- {name: a, file: a.pt, source: 'ftp://x/a.pt', family: f, licence: L, classes: coco80}", "source"),
    ("- {name: a, file: a.pt, source: 'https://x/a.pt', family: f, licence: L, classes: coco80, sha256: abc}", "sha256"),
    ("- {name: a, file: a.pt, source: 'https://x/a.pt', licence: L, classes: coco80}", "family"),
    ("- {name: a, file: a.pt, source: 'https://x/a.pt', family: f, licence: L, classes: coco80, colour: red}", "colour"),
])
def test_bad_registry_is_rejected(tmp_path, bad, match):
    reg = tmp_path / "reg.yaml"
    reg.write_text("weights:\n  " + bad + "\n")
    with pytest.raises(ValueError, match=match):
        list_registry(reg)


# ---------------------------------------------------------------------------------------------- resolve


def test_existing_path_is_returned_as_is(teacher_pt):
    assert resolve_weights(teacher_pt) == teacher_pt
    assert resolve_weights(str(teacher_pt), download=False) == teacher_pt


def test_missing_path_is_not_treated_as_a_name(tmp_path):
    with pytest.raises(WeightsError, match="does not exist.*pass just the name yolov8s"):
        resolve_weights(tmp_path / "nowhere" / "yolov8s.pt", download=False)
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights("runs/train/weights/best.pt", download=False)


@pytest.mark.parametrize("name", ["yolov8n-coco", "yolov8n-coco.pt"])
def test_resolve_by_name_verifies_sha256(teacher_dir, name, capsys):
    got = resolve_weights(name, weights_dir=teacher_dir, download=False)
    assert got == teacher_dir / "yolov8n-coco.pt" and got.is_file()
    assert "sha256" not in capsys.readouterr().err  # pinned and matching: nothing to say


def test_search_order_env_then_local_folder(tmp_path, teacher_pt, monkeypatch):
    local = tmp_path / "weights"  # ./weights relative to the (tmp) cwd
    local.mkdir()
    shutil.copyfile(teacher_pt, local / "yolov8n-coco.pt")
    assert resolve_weights("yolov8n-coco", download=False) == local / "yolov8n-coco.pt"
    env = tmp_path / "env"
    env.mkdir()
    shutil.copyfile(teacher_pt, env / "yolov8n-coco.pt")
    monkeypatch.setenv(W.ENV_DIR, str(env))
    assert resolve_weights("yolov8n-coco", download=False) == env / "yolov8n-coco.pt"
    dirs = W.search_dirs(tmp_path / "arg")
    assert dirs[:3] == [tmp_path / "arg", env, local] and dirs[3] == tmp_path / "ultra-weights"


def test_sha256_mismatch_is_an_error_and_the_file_is_set_aside(teacher_dir, teacher_pt):
    bad = teacher_dir / "yolov8n-coco.pt"
    bad.write_bytes(teacher_pt.read_bytes() + b"tampered")
    got = file_sha256(bad)
    with pytest.raises(ChecksumError) as info:
        resolve_weights("yolov8n-coco", weights_dir=teacher_dir, download=False)
    msg = str(info.value)
    assert FIXTURE_SHA in msg and got in msg and "expected" in msg
    assert not bad.exists() and (teacher_dir / "yolov8n-coco.pt.corrupt").is_file()
    # it is never picked up again: the name is now simply missing
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("yolov8n-coco", weights_dir=teacher_dir, download=False)
    bad.write_bytes(b"a second bad copy")  # set aside beside the first, which is kept
    with pytest.raises(ChecksumError):
        resolve_weights("yolov8n-coco", weights_dir=teacher_dir, download=False)
    assert (teacher_dir / "yolov8n-coco.pt.corrupt-2").read_bytes() == b"a second bad copy"
    assert (teacher_dir / "yolov8n-coco.pt.corrupt").read_bytes() == teacher_pt.read_bytes() + b"tampered"


def test_unpinned_sha256_is_printed_and_a_file_that_is_no_checkpoint_or_another_model_is_set_aside(tmp_path, capsys, teacher_pt):
    d = tmp_path / "w"
    d.mkdir()
    (d / "yolov8n.pt").write_bytes(teacher_pt.read_bytes())  # a YOLOv8n checkpoint under the unpinned yolov8n
    assert resolve_weights("yolov8n", weights_dir=d, download=False) == d / "yolov8n.pt"
    err = capsys.readouterr().err
    assert file_sha256(d / "yolov8n.pt") in err and "not pinned" in err
    (d / "yolov8s.pt").write_bytes(teacher_pt.read_bytes())  # a real checkpoint, but not of the model its name says
    with pytest.raises(ChecksumError, match=r"is not the registry's 'yolov8s': its checkpoint says it holds a yolov8n"):
        resolve_weights("yolov8s", weights_dir=d, download=False)
    assert (d / "yolov8s.pt.corrupt").read_bytes() == teacher_pt.read_bytes()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.save({"model": DetectionModel("yolo26n.yaml", nc=5, verbose=False)}, d / "yolo26n.pt")  # fine-tuned: 5 classes
    assert resolve_weights("yolo26n", weights_dir=d, download=False) == d / "yolo26n.pt"  # still a YOLO26n
    (d / "yolov8s.pt").write_bytes(b"not really a checkpoint")  # e.g. an HTML error page saved as .pt
    with pytest.raises(ChecksumError, match="is not a PyTorch checkpoint"):
        resolve_weights("yolov8s", weights_dir=d, download=False)
    assert (d / "yolov8s.pt.corrupt-2").read_bytes() == b"not really a checkpoint"


@pytest.mark.parametrize("download", [None, False])
def test_offline_missing_says_what_to_place_where(tmp_path, download):
    with pytest.raises(WeightsError) as info:
        resolve_weights("yolov8s", weights_dir=tmp_path / "mine", download=download)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert "yolov8s.pt" in msg
    assert "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8s.pt" in msg
    for d in (tmp_path / "mine", tmp_path / "weights", tmp_path / "ultra-weights"):
        assert str(d) in msg
    assert ("YOLO_OFFLINE" in msg) == (download is None)


def test_fixture_entry_is_never_downloaded(tmp_path):
    with pytest.raises(WeightsError, match=r"yolov8n-coco\.pt.*shared/fixtures/weights/yolov8n-coco\.pt"):
        resolve_weights("yolov8n-coco", weights_dir=tmp_path / "mine", download=True)


def test_a_weights_folder_that_is_a_file_is_refused(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(WeightsError, match=r"--dir .*afile is a file, not a folder"):
        resolve_weights("yolov8s", weights_dir=afile, download=False)
    (tmp_path / "mine" / "yolov8s.pt").mkdir(parents=True)  # a folder under the checkpoint's name
    with pytest.raises(WeightsError, match=r"mine/yolov8s.pt is a folder, not the checkpoint 'yolov8s': move it"):
        resolve_weights("yolov8s", weights_dir=tmp_path / "mine", download=False)
    with pytest.raises(WeightsError, match="the weights name is empty"):
        resolve_weights(" ")
    monkeypatch.setenv(W.ENV_DIR, str(afile))
    with pytest.raises(WeightsError, match=r"DETDISTILL_WEIGHTS .*afile is a file, not a folder"):
        resolve_weights("yolov8s", weights_dir=tmp_path / "mine", download=False)
    assert afile.read_text() == "not a folder"


def test_unknown_name_suggests_close_names():
    with pytest.raises(WeightsError, match=r"did you mean .*yolov8s") as info:
        resolve_weights("yolov8ss", download=False)
    assert "detdistill weights list" in str(info.value)
    with pytest.raises(WeightsError, match="neither an existing file nor a registry name"):
        resolve_weights("resnet50", download=False)


def test_download_goes_to_first_writable_folder_and_is_checked(tmp_path, teacher_pt, monkeypatch):
    """The download path, with a fake downloader: a good file lands in place, a bad one is never kept."""
    reg = tmp_path / "reg.yaml"
    reg.write_text(
        "weights:\n"
        f"  - {{name: good, file: good.pt, source: 'https://example.invalid/good.pt', sha256: {FIXTURE_SHA},\n"
        "     family: yolov8, licence: AGPL-3.0, classes: coco80}\n"
        f"  - {{name: bad, file: bad.pt, source: 'https://example.invalid/bad.pt', sha256: {FIXTURE_SHA},\n"
        "     family: yolov8, licence: AGPL-3.0, classes: coco80}\n")
    monkeypatch.setattr(W, "REGISTRY_FILE", reg)
    calls = []

    def fake_download(url, dest):
        calls.append(url)
        dest.write_bytes(teacher_pt.read_bytes() if url.endswith("good.pt") else b"garbage")

    monkeypatch.setattr(W, "_download", fake_download)
    target = tmp_path / "dl"
    assert resolve_weights("good", weights_dir=target, download=True) == target / "good.pt"
    assert file_sha256(target / "good.pt") == FIXTURE_SHA
    with pytest.raises(ChecksumError, match="expected"):
        resolve_weights("bad", weights_dir=target, download=True)
    assert sorted(p.name for p in target.iterdir()) == ["good.pt"]
    # offline (YOLO_OFFLINE=1 from the autouse fixture) and download=None: no attempt at all
    with pytest.raises(WeightsError, match="YOLO_OFFLINE"):
        resolve_weights("bad", weights_dir=target)
    assert calls == ["https://example.invalid/good.pt", "https://example.invalid/bad.pt"]


def test_download_never_creates_a_weights_folder_in_cwd(tmp_path, teacher_pt, monkeypatch):
    monkeypatch.setattr(W, "_download", lambda url, dest: dest.write_bytes(teacher_pt.read_bytes()))
    monkeypatch.setattr(W, "_model_of", lambda path: None)  # the fake downloads are a YOLOv8n under other names
    got = resolve_weights("yolov8s", download=True)  # unpinned: accepted, digest printed
    assert got == tmp_path / "ultra-weights" / "yolov8s.pt" and not (tmp_path / "weights").exists()
    (tmp_path / "weights").mkdir()
    assert resolve_weights("yolov8m", download=True) == tmp_path / "weights" / "yolov8m.pt"


# -------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli() -> typer.Typer:
    from detdistill.registry.cli import register

    app = typer.Typer()

    @app.command()
    def version() -> None:  # a second command, so `weights` stays a sub-command as in the real CLI
        typer.echo("0")

    register(app)
    return app


def test_cli_list(cli, teacher_dir):
    res = CliRunner().invoke(cli, ["weights", "list", "--dir", str(teacher_dir)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:3] == ["NAME", "FAMILY", "CLASSES"]
    row = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert str(teacher_dir / "yolov8n-coco.pt") in row["yolov8n-coco"]
    assert row["yolov8s"].split()[-1] == "-" and "yolov8s.pt" in row["yolov8s"]
    assert "searched:" in res.output and str(teacher_dir) in res.output
    assert "except yolov8n-coco: test files, never downloaded" in res.output  # it said every missing one downloads
    res = CliRunner().invoke(cli, ["weights", "list", "--dir", str(teacher_dir / "absent")])  # a typo: not "none here"
    assert res.exit_code == 2 and "absent is not a folder here" in res.output
    res = CliRunner().invoke(cli, ["weights", "list"], env={"DETDISTILL_WEIGHTS": str(teacher_dir / "yolov8n-coco.pt")})
    assert res.exit_code == 2 and "DETDISTILL_WEIGHTS" in res.output and "is a file, not a folder" in res.output
    res = CliRunner().invoke(cli, ["weights", "list"], env={"DETDISTILL_WEIGHTS": str(teacher_dir / "absent")})
    assert res.exit_code == 0 and f"warning: DETDISTILL_WEIGHTS={teacher_dir / 'absent'} does not exist here" in res.output


def test_cli_fetch(cli, teacher_dir):
    res = CliRunner().invoke(cli, ["weights", "fetch", "yolov8n-coco", "--dir", str(teacher_dir)])
    assert res.exit_code == 0, res.output
    assert str(teacher_dir / "yolov8n-coco.pt") in res.output and f"sha256 {FIXTURE_SHA}" in res.output


def test_cli_fetch_errors(cli, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["weights", "fetch", "yolov8s", "--dir", str(tmp_path / "mine")])
    assert res.exit_code == 2
    assert "error:" in res.output and "yolov8s.pt" in res.output and "releases/download" in res.output
    res = runner.invoke(cli, ["weights", "fetch", "yolov8q"])
    assert res.exit_code == 2 and "did you mean" in res.output
