"""Content hashes: the one way detdistill keys artifacts, caches and stages (torch-free).

A file's key depends on what it holds, never on when it was written, so a file rewritten with the same bytes
keeps its caches, and one changed in place never reuses a stale one. Keys of large sets of files checked on every
run (a folder's listing, the images a video or a labelling was made of) read their names, sizes and modification
times instead (:func:`stat_key`, or a listing composed by the caller for :func:`text_key`), so that no file is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

_digests: dict[tuple, str] = {}  # (path, size, mtime, inode) -> SHA-256: each file is read once per process


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's contents (memoised while its size, mtime and inode stay the same)."""
    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _digests[memo] = h.hexdigest()
    return _digests[memo]


def files_key(paths: Iterable[str | Path]) -> str:
    """Short digest of a set of files (their names and contents), e.g. a calibration image set."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        h.update(f"{Path(p).name}|{file_sha256(p)}\n".encode())
    return h.hexdigest()[:16]


def text_key(text: str, length: int = 16) -> str:
    """Short digest (``length`` hex digits) of a text."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def stat_key(paths: Iterable[str | Path], header: str = "") -> str:
    """Short digest of files by path, size and modification time, in order, after an optional ``header`` line (no
    file is read; a missing one counts as missing)."""
    rows = [header] if header else []
    for path in paths:
        st = Path(path).stat() if Path(path).exists() else None
        rows.append(f"{Path(path).resolve()}\t{st.st_size}\t{st.st_mtime_ns}" if st else f"{path}\tmissing")
    return text_key("\n".join(rows), 20)


def settings_key(settings: object) -> str:
    """Short digest of JSON-serialisable settings (key order does not matter), e.g. what a cached result depends
    on beside its files."""
    return text_key(json.dumps(settings, sort_keys=True, default=str))
