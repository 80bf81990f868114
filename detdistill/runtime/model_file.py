"""Checks of a model file before a runtime opens it (torch-free)."""

from __future__ import annotations

from pathlib import Path


class EmptyModelError(ValueError):
    """A model file of 0 bytes (an export, build or copy that stopped before writing anything)."""


def require_nonempty(path: str | Path) -> None:
    """Raise :class:`EmptyModelError` for a 0-byte model file, which ONNX Runtime would only call 'No graph'."""
    path = Path(path)
    if path.stat().st_size == 0:
        fix = ("build it again with `detdistill build`" if path.suffix.lower() in (".engine", ".plan")
               else "export it again with `detdistill export`")
        raise EmptyModelError(f"model {path} is empty (0 bytes: an export or copy that did not finish?); {fix}")
