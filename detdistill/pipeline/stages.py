"""Stage bookkeeping: each stage runs once per set of inputs; a rerun skips it while its outputs are up to date.

``stages.json`` in the work folder records, per stage, the key of its inputs (its settings plus the
size and mtime of every input file), whether it finished, and its result. A finished stage whose key
matches and whose output files still exist is skipped; anything else runs again, so an interrupted
run resumes where it stopped (a training stage from its ``last.pt``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fingerprint(value: Any) -> Any:
    """A JSON-able stand-in for ``value`` that changes when it (or, for a file, its contents) changes."""
    if isinstance(value, Path):
        if value.is_file():
            st = value.stat()
            return f"{value.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        return f"{value.resolve()}|missing" if not value.exists() else f"{value.resolve()}|dir"
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v) for v in value]
    return value


class StageCache:
    """Runs stages through a manifest in ``workdir/stages.json``."""

    def __init__(self, workdir: Path, log: Callable[[str], None] = print):
        self.workdir = workdir
        self.file = workdir / "stages.json"
        self.manifest: dict[str, dict] = json.loads(self.file.read_text()) if self.file.is_file() else {}
        self.log = log
        self.rows: list[tuple[str, str, float]] = []  # this invocation: (name, "ran" | "cached" | "skipped: why", s)
        self.total = 0

    def _key(self, inputs: dict) -> str:
        return hashlib.sha256(json.dumps(fingerprint(inputs), sort_keys=True, default=str).encode()).hexdigest()[:20]

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
        if entry and entry["key"] == key and entry.get("done") and all(p.exists() for p in outputs):
            self.log(f"{where}{name}: up to date, skipped")
            self.rows.append((name, "cached", 0.0))
            return entry["result"]
        resuming = entry is not None and entry["key"] == key
        self.log(f"{where}{name}" + (" (resuming)" if resuming and clean else ""))
        if not resuming:
            for folder in clean:
                shutil.rmtree(folder, ignore_errors=True)
        self._save(name, {"key": key, "done": False})
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        self._save(name, {"key": key, "done": True, "result": result, "seconds": round(seconds, 1)})
        self.rows.append((name, "ran", seconds))
        return result

    def _save(self, name: str, entry: dict) -> None:
        self.manifest[name] = entry
        self.file.write_text(json.dumps(self.manifest, indent=1, default=str))

    def skip(self, name: str, why: str) -> None:
        self.log(f"{self._step()}{name}: skipped ({why})")
        self.rows.append((name, f"skipped: {why}", 0.0))

    def _step(self) -> str:
        """The ``[n/N] `` prefix of the next stage's progress line (empty when N is unknown)."""
        return f"[{len(self.rows) + 1}/{self.total}] " if self.total else ""
