"""Known teacher checkpoints, resolved by name: ``resolve_weights("yolov8s")`` -> a verified local ``.pt``.

The registry (``detdistill/registry/weights.yaml``) names each checkpoint's file, where to download it, and,
where known, its sha256. A name is looked for, in order, in:

1. the ``weights_dir`` argument (``--dir`` on the command line),
2. the folder in the ``DETDISTILL_WEIGHTS`` environment variable,
3. ``./weights/`` (relative to the working directory),
4. ultralytics' own weights folder (``ultralytics.utils.SETTINGS['weights_dir']``), when ultralytics is installed.

A file found there is checked against the registry's sha256 (a file that fails is renamed ``*.corrupt`` and
never used). If the name is nowhere, it is downloaded into the first of those folders that can be written
(``./weights/`` only if it already exists), unless downloading is off (``download=False``, or ``YOLO_OFFLINE``
set): then the error says which file to place where, and the URL to fetch it from on a machine with internet.

This module needs neither torch nor ultralytics; when ultralytics is installed it adds its weights folder to
the search and does the downloading.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ..hashing import file_sha256  # noqa: F401  (also part of this module's API: weights verify)
from ..models import CheckpointError, load_detection_checkpoint

REGISTRY_FILE = Path(__file__).resolve().parent / "weights.yaml"
ENV_DIR = "DETDISTILL_WEIGHTS"
FIXTURE_PREFIX = "fixture:"
COCO80 = "coco80"
_REQUIRED = ("name", "file", "source", "classes", "family", "licence")
_TRUE = {"1", "true", "yes", "on", "y", "t"}


class WeightsError(FileNotFoundError):
    """A weights name or path that cannot be turned into a usable local file (the message says how to fix it)."""


class ChecksumError(WeightsError):
    """A local or downloaded file whose sha256 differs from the registry's, or, unpinned, that is no checkpoint or a
    checkpoint of another model than its name says."""


@dataclass(frozen=True)
class WeightsEntry:
    """One registry entry (see ``detdistill/registry/weights.yaml`` for the meaning of each field)."""

    name: str
    file: str
    source: str
    classes: str | tuple[str, ...]
    family: str
    licence: str
    task: str = "detect"
    sha256: str | None = None
    params_m: float | None = None
    gflops: float | None = None

    @property
    def url(self) -> str | None:
        """The download URL, or None for a fixture (a file copied by hand, never downloaded)."""
        return self.source if self.source.startswith(("https://", "http://")) else None

    @property
    def fixture_path(self) -> str | None:
        """For a fixture entry, where the file lives (relative to the repository root)."""
        return self.source[len(FIXTURE_PREFIX):].strip() if self.source.startswith(FIXTURE_PREFIX) else None

    @property
    def num_classes(self) -> int:
        return 80 if self.classes == COCO80 else len(self.classes)

    @property
    def classes_label(self) -> str:
        """``coco80``, or ``N classes`` for a custom list."""
        return self.classes if isinstance(self.classes, str) else f"{len(self.classes)} classes"


# ----------------------------------------------------------------------------------------------- registry


def _entry(raw: dict[str, Any], defaults: dict[str, Any], where: str) -> WeightsEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: each entry under `weights:` must be a mapping, got {raw!r}")
    fields = {**defaults, **raw}
    missing = [k for k in _REQUIRED if fields.get(k) in (None, "")]
    if missing:
        raise ValueError(f"{where}: entry {raw.get('name', '?')!r} lacks {', '.join(missing)}")
    unknown = set(fields) - set(WeightsEntry.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{where}: entry {fields['name']!r} has unknown field(s) {', '.join(sorted(unknown))}")
    classes = fields["classes"]
    if isinstance(classes, list):
        if not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{where}: entry {fields['name']!r}: classes must be {COCO80!r} or a list of names")
        fields["classes"] = tuple(classes)
    elif classes != COCO80:
        raise ValueError(f"{where}: entry {fields['name']!r}: classes must be {COCO80!r} or a list of names")
    sha = fields.get("sha256")
    if sha is not None:
        sha = str(sha).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"{where}: entry {fields['name']!r}: sha256 must be 64 hex digits or null")
        fields["sha256"] = sha
    source = str(fields["source"])
    if not source.startswith(("https://", "http://", FIXTURE_PREFIX)):
        raise ValueError(f"{where}: entry {fields['name']!r}: source must be an https URL or '{FIXTURE_PREFIX} <path>'")
    return WeightsEntry(**{k: (str(v) if k in ("name", "file", "source", "family", "licence", "task") else v)
                           for k, v in fields.items()})


@lru_cache(maxsize=8)
def _load(path: Path) -> tuple[WeightsEntry, ...]:
    data = yaml.safe_load(path.read_text()) or {}
    defaults = data.get("defaults") or {}
    entries = tuple(_entry(raw, defaults, str(path)) for raw in data.get("weights") or [])
    seen: set[str] = set()
    for e in entries:
        for key in {e.name.lower(), Path(e.file).stem.lower()}:
            if key in seen:
                raise ValueError(f"{path}: the name or file {key!r} appears twice")
            seen.add(key)
    return entries


def list_registry(registry: str | Path | None = None) -> list[WeightsEntry]:
    """All registry entries, in file order (``registry`` overrides the built-in registry file)."""
    return list(_load(Path(registry or REGISTRY_FILE).resolve()))


def get_entry(name: str, registry: str | Path | None = None) -> WeightsEntry | None:
    """The entry called ``name`` (``yolov8s`` or ``yolov8s.pt``, any case), or None."""
    key = name.strip().lower()
    stem = key[:-3] if key.endswith(".pt") else key
    for e in list_registry(registry):
        if stem == e.name.lower() or key == e.file.lower():
            return e
    return None


# ---------------------------------------------------------------------------------------------- folders


def offline() -> bool:
    """True when ``YOLO_OFFLINE`` is set to a truthy value (the same rule ultralytics uses)."""
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in _TRUE


def _ultralytics_weights_dir() -> Path | None:
    try:
        from ultralytics.utils import SETTINGS  # lazy: ultralytics (optional: the deploy install has none)
    except ImportError:  # the base (deploy) install has no ultralytics
        return None
    value = SETTINGS.get("weights_dir")
    return Path(value) if value else None


def search_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """The folders a registry name is looked for in, in order, without duplicates (they need not exist)."""
    candidates: list[Path | None] = [
        Path(weights_dir) if weights_dir else None,
        Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else None,
        Path.cwd() / "weights",
        _ultralytics_weights_dir(),
    ]
    out: list[Path] = []
    for d in candidates:
        if d is None:
            continue
        d = d.expanduser().resolve()
        if d not in out:
            out.append(d)
    return out


def find_local(entry: WeightsEntry, weights_dir: str | Path | None = None) -> Path | None:
    """The first copy of ``entry.file`` in :func:`search_dirs` (not checksummed), or None."""
    for d in search_dirs(weights_dir):
        if (d / entry.file).is_file():
            return d / entry.file
    return None


def _writable_dir(dirs: list[Path]) -> Path | None:
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    return None


# -------------------------------------------------------------------------------------------- checksums


def _quarantine(path: Path) -> Path | None:
    """Rename a bad file to ``<name>.corrupt`` (``<name>.corrupt-2``, ... when that exists: an earlier bad copy is
    kept) so it is never picked up again; None if that is not allowed."""
    bad, n = path.with_name(path.name + ".corrupt"), 1
    while bad.exists():
        n += 1
        bad = path.with_name(f"{path.name}.corrupt-{n}")
    try:
        os.replace(path, bad)
    except OSError:
        return None
    return bad


def _model_of(path: Path) -> str | None:
    """The model a checkpoint says it holds, as its YAML names it (``yolov8n.yaml`` -> ``yolov8n``); None where it
    names none or cannot be read (the teacher's loader names that problem)."""
    try:
        model = load_detection_checkpoint(path, role="weights", tasks=("detect", "segment", "pose", "obb"))[0]
    except CheckpointError:  # left to the teacher's loader, which names the problem where the file is used
        return None
    cfg = getattr(model, "yaml", None)
    if not isinstance(cfg, dict):
        return None
    m = re.fullmatch(r"(yolo(?:v8|11|26))([nslmx])?", Path(str(cfg.get("yaml_file", ""))).stem)
    return f"{m[1]}{cfg.get('scale') or m[2] or ''}" if m else None


def _say(message: str) -> None:
    print(f"detdistill: {message}", file=sys.stderr)


def _check(path: Path, entry: WeightsEntry, how: str) -> Path:
    """Verify ``path`` against the entry's sha256; where the registry pins none, print the digest and check that
    it is a PyTorch checkpoint (a zip archive, as ``torch.save`` writes) of the model the name says, family and
    scale as its YAML records them (a fine-tuned copy with other classes is still that model)."""
    got = file_sha256(path)
    if entry.sha256 is None:
        if not zipfile.is_zipfile(path):
            problem = "is not a PyTorch checkpoint (not a zip archive: truncated, or another file)"
        elif (held := _model_of(path)) and re.fullmatch(r"yolo(v8|11|26)[nslmx]", entry.name) and held != entry.name:
            problem = f"is not the registry's {entry.name!r}: its checkpoint says it holds a {held}"
        else:
            _say(f"{path}: sha256 {got} (not pinned in the registry, so not checked)")
            return path
    elif got == entry.sha256:
        return path
    else:
        problem = f"is not the registry's {entry.name!r}: sha256 expected {entry.sha256}, got {got}"
    moved = _quarantine(path)
    where = f"it was renamed to {moved}" if moved else f"it could not be renamed (delete {path} yourself)"
    fix = f"download it again from {entry.url}" if entry.url else f"copy it again from {entry.fixture_path}"
    raise ChecksumError(f"{how} {path} {problem}; {where} and will not be used. {fix}")


# ---------------------------------------------------------------------------------------------- resolve


def _download(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` with ultralytics' downloader (retries, resume, size check)."""
    from ultralytics.utils.downloads import safe_download  # lazy: ultralytics (as above)

    safe_download(url=url, file=dest, unzip=False, min_bytes=1e5, progress=True)


def _looks_like_path(text: str) -> bool:
    p = Path(text)
    return p.is_absolute() or len(p.parts) > 1 or text.startswith(("~", ".")) or p.suffix not in ("", ".pt")


def check_folders(weights_dir: str | Path | None) -> None:
    """Refuse a weights folder the user named (``--dir`` or ``DETDISTILL_WEIGHTS``) that is an existing file."""
    for given, how in ((weights_dir, "--dir"), (os.environ.get(ENV_DIR), ENV_DIR)):
        folder = Path(given).expanduser() if given else None
        if folder is not None and folder.exists() and not folder.is_dir():
            raise WeightsError(f"{how} {given} is a file, not a folder: give the folder that holds the checkpoint "
                               "(or where it is to be downloaded)")


def _not_found(entry: WeightsEntry, dirs: list[Path], reason: str) -> WeightsError:
    folders = ", ".join(str(d) for d in dirs)
    if entry.url:
        fetch = f"On a machine with internet, download it from {entry.url}"
    else:
        fetch = f"It is not downloadable; copy it from {entry.fixture_path} (relative to the repository root)"
    sha = f" (sha256 {entry.sha256})" if entry.sha256 else ""
    return WeightsError(
        f"weights {entry.name!r} not found and {reason}. Place the file {entry.file} in one of: {folders} "
        f"(or set {ENV_DIR} to the folder that holds it). {fetch}{sha}")


def resolve_weights(name_or_path: str | Path, weights_dir: Path | None = None, download: bool | None = None) -> Path:
    """Turn a path or a registry name into an existing local checkpoint.

    ``name_or_path``: an existing file (returned as is, unchecked), or a registry name such as ``yolov8s`` /
    ``yolov8s.pt``. ``weights_dir``: a folder searched first, and where downloads go. ``download``: True to
    download a missing file even with ``YOLO_OFFLINE`` set, False never to, None (default) unless
    ``YOLO_OFFLINE`` is set. Raises :class:`WeightsError` (a ``FileNotFoundError``) with the fix in its message.
    """
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    if text and path.is_file():
        return path
    entry = get_entry(text) if text and not _looks_like_path(text) else None
    if entry is None:
        raise _unknown(text, path)

    check_folders(weights_dir)
    dirs = search_dirs(weights_dir)
    for d in dirs:
        candidate = d / entry.file
        if candidate.is_file():
            return _check(candidate, entry, "local file")
        if candidate.is_dir():
            raise WeightsError(f"{candidate} is a folder, not the checkpoint {entry.name!r}: move it away, then place "
                               f"the file {entry.file} there or fetch it again")

    if download is False:
        raise _not_found(entry, dirs, "downloading is off (download=False)")
    if download is None and offline():
        raise _not_found(entry, dirs, f"downloading is off (YOLO_OFFLINE={os.environ.get('YOLO_OFFLINE')})")
    if entry.url is None:
        raise _not_found(entry, dirs, "it is a test fixture, never downloaded")
    local = (Path.cwd() / "weights").resolve()
    # ./weights/ only receives downloads if it exists (no new folder in whatever directory this runs from)
    target_dir = _writable_dir([d for d in dirs if d != local or d.is_dir()] + [local])
    if target_dir is None:
        raise _not_found(entry, dirs, "none of those folders can be written to download it")
    target = target_dir / entry.file
    partial = target.with_name(target.name + ".part")
    _say(f"downloading {entry.name} from {entry.url} to {target}")
    partial.unlink(missing_ok=True)  # a stale partial would be taken for a finished download
    try:
        _download(entry.url, partial)
    except Exception as e:  # network, HTTP or disk errors: say what to do instead
        partial.unlink(missing_ok=True)
        raise _not_found(entry, dirs, f"downloading it failed ({e})") from e
    if not partial.is_file():
        raise _not_found(entry, dirs, f"downloading it from {entry.url} wrote nothing")
    try:
        _check(partial, entry, "downloaded file")
    except ChecksumError:
        Path(str(partial) + ".corrupt").unlink(missing_ok=True)  # a bad download is worth nothing
        raise
    os.replace(partial, target)
    return target


def _unknown(text: str, path: Path) -> WeightsError:
    names = [e.name for e in list_registry()]
    if not text:
        return WeightsError("the weights name is empty: pass a registry name such as yolov8s (see `detdistill "
                            "weights list`) or the path of a .pt file")
    if _looks_like_path(text):
        hint = ""
        known = get_entry(path.name)
        if known is not None:
            hint = f"; to use the registry's {known.name!r}, pass just the name {known.name}"
        return WeightsError(f"weights file {text!r} does not exist{hint}")
    stem = text.lower()[:-3] if text.lower().endswith(".pt") else text.lower()
    close = difflib.get_close_matches(stem, names, n=4, cutoff=0.6)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    return WeightsError(
        f"{text!r} is neither an existing file nor a registry name; {suggestion}"
        f"known names: {', '.join(names)} (see `detdistill weights list`)")
