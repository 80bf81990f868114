"""Content hashes used to key artifacts and calibration caches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_key(paths: Iterable[str | Path]) -> str:
    """Short digest of a list of files (names, sizes and mtimes), e.g. a calibration image set."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        st = Path(p).stat()
        h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]
