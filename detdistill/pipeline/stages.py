"""Stage bookkeeping: each stage runs once per set of inputs; a rerun skips it while its outputs are up to date.

``stages.json`` in the work folder records, per stage, the key of its inputs (its settings plus the
SHA-256 of every input file's contents, and a listing of every input folder's image and label files: their
paths, sizes and modification times; a dataset is its data YAML plus its splits' folders, see
:mod:`.dataset_files`), whether it finished, and its result. A finished stage whose key
matches and whose output files still exist is skipped; anything else runs again, so an interrupted
run resumes where it stopped (a training stage from its ``last.pt``). Keys depend on what files hold,
not on when they were written: a file rewritten with the same contents (e.g. the scaled student YAML,
written on every run) leaves the stages that read it cached.

Paths inside the work folder are recorded relative to it, in keys and results alike, so a work folder
that is moved or copied keeps its finished stages. A training interrupted before the move starts again
(ultralytics' checkpoint holds the old folder).

``stages.json`` is written atomically; one found damaged anyway (empty, half-written) is set aside as
``stages.json.damaged-<time>`` and the stages are rebuilt, reusing the training folders they left.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import atomic
from ..hashing import file_sha256, text_key
from .dataset_files import DataInput, dataset_paths, folder_listing

# 4: folders by their files, datasets with their splits' folders; 3: folders by name, paths in the work folder
# relative to it; 2: absolute; entries without "v": files by size and mtime
KEY_VERSION = 4
WORK = "<work>"  # stands for the work folder in keys and recorded results


def _swap_prefix(value: Any, old: str, new: str) -> Any:
    """``value`` with every string that is ``old`` or starts with ``old`` and a separator rewritten to start with
    ``new``."""
    if isinstance(value, str) and (value == old or value.startswith((old + "/", old + os.sep))):
        return new + value[len(old):]
    if isinstance(value, dict):
        return {k: _swap_prefix(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_prefix(v, old, new) for v in value]
    return value


def fingerprint(value: Any, version: int = KEY_VERSION, work: Path | None = None,
                listings: dict[str, str] | None = None) -> Any:
    """A JSON-able stand-in for ``value`` that changes when it (or, for a file, its contents; for a folder, its
    image and label files; for a :class:`DataInput`, its YAML and its splits' folders) changes.

    ``work``: paths (and path strings) inside this folder are given relative to it.
    ``version``: the form of keys of that :data:`KEY_VERSION` (older ones are read, never written).
    ``listings``: folder listings already taken, by resolved path (taken once per run: a listing taken before a
    change only makes the next run redo more, never less)."""
    deeper = (version, work, listings)
    if isinstance(value, DataInput):
        if version < 4:  # the data YAML alone
            return fingerprint(value.yaml, *deeper)
        return {"yaml": fingerprint(value.yaml, *deeper), "files": fingerprint(dataset_paths(value.yaml), *deeper)}
    if isinstance(value, Path):
        where = str(value.resolve())
        where = _swap_prefix(where, str(work), WORK) if work is not None else where
        if value.is_file():
            if version < 2:
                st = value.stat()
                return f"{where}|{st.st_size}|{st.st_mtime_ns}"
            return f"{where}|sha256:{file_sha256(value)}"
        if not value.exists():
            return f"{where}|missing"
        if version < 4:
            return f"{where}|dir"
        listing = listings.get(where) if listings is not None else None
        if listing is None:
            listing = folder_listing(value)
            if listings is not None:
                listings[where] = listing
        return f"{where}|{listing}"
    if isinstance(value, dict):
        return {str(k): fingerprint(v, *deeper) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v, *deeper) for v in value]
    if isinstance(value, str) and work is not None:
        return _swap_prefix(value, str(work), WORK)
    return value


class StageCache:
    """Runs stages through a manifest in ``workdir/stages.json``."""

    MANIFEST = "stages.json"

    def __init__(self, workdir: Path, log: Callable[[str], None] = print):
        self.workdir = workdir.resolve()
        self.file = workdir / self.MANIFEST
        self.log = log
        self.recovered = False  # the manifest was damaged and set aside: reuse the training folders found
        self.manifest: dict[str, dict] = self._load()
        self.rows: list[tuple[str, str, float]] = []  # this invocation: (name, "ran" | "cached" | "skipped: why", s)
        self.total = 0
        self.listings: dict[str, str] = {}  # input folders listed in this run (a dataset is read by many stages)

    def _load(self) -> dict[str, dict]:
        """The manifest; a damaged one is renamed aside with a warning and an empty one returned."""
        if not self.file.is_file():
            return {}
        try:
            manifest = json.loads(self.file.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict) or not all(isinstance(e, dict) and "key" in e for e in manifest.values()):
                raise ValueError("not a mapping of stage name to record")
        except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
            aside = self.file.with_name(f"stages.json.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            n = 1
            while aside.exists():
                aside, n = aside.with_name(f"{aside.name.split('~')[0]}~{n}"), n + 1
            self.file.replace(aside)
            self.log(f"warning: {self.file} is damaged ({' '.join(str(e).split())}); set it aside as {aside.name} "
                     "and rebuilding the stages (finished trainings in this folder are reused)")
            self.recovered = True
            return {}
        return manifest

    def _key(self, inputs: dict, version: int = KEY_VERSION) -> str:
        work = self.workdir if version >= 3 else None
        text = json.dumps(fingerprint(inputs, version, work, self.listings), sort_keys=True, default=str)
        return text_key(text, 20)

    def _matches(self, entry: dict | None, inputs: dict, key: str) -> bool:
        if entry is None:
            return False
        version = entry.get("v", 1)
        return entry["key"] == (key if version == KEY_VERSION else self._key(inputs, version))

    def _moved(self, entry: dict) -> bool:
        """Whether ``entry`` was recorded in a work folder at another place (moved or copied since)."""
        return entry.get("work", str(self.workdir)) != str(self.workdir)

    def run(self, name: str, inputs: dict, outputs: list[Path], fn: Callable[[], Any],
            clean: tuple[Path, ...] = ()) -> Any:
        """Return ``fn()``'s result, or the recorded one when ``inputs`` and ``outputs`` are unchanged.

        ``clean``: folders of a previous run of this stage (e.g. a training run). They are kept when the
        stage was interrupted with the same inputs (so ``fn`` can resume from them) and deleted when the
        inputs changed (so nothing stale is picked up).
        """
        where = self._step()
        key = self._key(inputs)
        entry = self.manifest.get(name)
        same = self._matches(entry, inputs, key)
        if same and entry.get("done") and all(p.exists() for p in outputs):
            result = self._result(entry)
            if entry.get("v") != KEY_VERSION or self._moved(entry):
                self._save(name, {**entry, "key": key, "v": KEY_VERSION}, result=result)
            self.log(f"{where}{name}: up to date, cached")
            self.rows.append((name, "cached", 0.0))
            return result
        # a training interrupted in a folder since moved starts again: its checkpoint names the old folder
        resuming = (same and not self._moved(entry)) or (entry is None and self.recovered)
        replaced = bool(entry and entry.get("done")) and not same  # its inputs changed since it finished
        # after a damaged manifest nothing says whether the folder's training finished: it resumes or is reused
        picking_up = " (resuming)" if same else " (from what its folder holds: resumed, or reused if finished)"
        self.log(f"{where}{name}" + (picking_up if resuming and clean else "") +
                 (" (its inputs or settings changed since the last run: done again, its earlier result replaced)"
                  if replaced else ""))
        if not resuming:
            for folder in clean:
                shutil.rmtree(folder, ignore_errors=True)
        self._save(name, {"key": key, "v": KEY_VERSION, "done": False})
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        self._save(name, {"key": key, "v": KEY_VERSION, "done": True, "seconds": round(seconds, 1)}, result=result)
        self.rows.append((name, "ran", seconds))
        return result

    def _result(self, entry: dict) -> Any:
        """A recorded result with its work-folder paths pointing into this work folder."""
        result = entry.get("result")
        if entry.get("v", 1) >= 3:
            return _swap_prefix(result, WORK, str(self.workdir))
        return result  # recorded with absolute paths (before the folder could move)

    def _save(self, name: str, entry: dict, result: Any = None) -> None:
        """Record ``entry`` (and ``result``, its work-folder paths made relative) with this folder's place."""
        entry = {**entry, "work": str(self.workdir)}
        if entry.get("done"):
            entry["result"] = _swap_prefix(json.loads(json.dumps(result, default=str)), str(self.workdir), WORK)
        self.manifest[name] = entry
        atomic.write_text(self.file, json.dumps(self.manifest, indent=1, default=str))

    def finished(self) -> list[str]:
        """The stages this folder's manifest records as finished."""
        return [name for name, entry in self.manifest.items() if entry.get("done")]

    def skip(self, name: str, why: str) -> None:
        self.log(f"{self._step()}{name}: skipped ({why})")
        self.rows.append((name, f"skipped: {why}", 0.0))

    def _step(self) -> str:
        """The ``[n/N] `` prefix of the next stage's progress line (empty when N is unknown)."""
        return f"[{len(self.rows) + 1}/{self.total}] " if self.total else ""
