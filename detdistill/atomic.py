"""Atomic file writes: write a temporary file in the target's folder, then ``os.replace`` it into place.

A reader (or a rerun after ``kill -9``) then finds either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: str | Path) -> Path:
    """A unique, hidden sibling of ``path`` to write to first (same folder, so ``os.replace`` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def commit(tmp: str | Path, path: str | Path) -> None:
    """Flush ``tmp`` to disk and move it onto ``path`` in one step."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for ``path``; on success it replaces ``path`` (if it was written), on error it
    is deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if tmp.exists():
            commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Atomically create ``path`` with ``write(tmp)``, e.g. ``save(p, lambda f: torch.save(obj, f))``."""
    with staged(path) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomic ``Path(path).write_bytes(data)``."""
    return save(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomic ``Path(path).write_text(text)``."""
    return save(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest parent that does (the folder a write there depends on)."""
    return next(p for p in (path, *path.parents) if p.exists())


def check_writable(path: str | Path, option: str = "-o") -> None:
    """Raise ``PermissionError`` naming ``path`` and ``option`` when a file cannot be written there (a read-only
    or system folder, or a folder of the path that is a file: ``clip.mp4/out.mp4``); checked before long work, so
    that its result is not lost at the end. Creates the folder."""
    path = Path(path)
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise PermissionError(f"{option} {path}: {parent} is a file, not a folder; pass {option} a path in a "
                              f"folder, e.g. {parent.parent / path.name}")
    probe = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
    except OSError as e:
        raise PermissionError(f"cannot write {path} ({e.strerror or e}): pass {option} a path in a folder you can "
                              "write to") from None
    probe.unlink()
