"""One wording, for every command and API, of a file that is missing or is a folder (dependency-free)."""

from __future__ import annotations

from pathlib import Path


def require_present(path: str | Path, what: str, fix: str) -> None:
    """Raise ``FileNotFoundError`` worded one way for every command and API when the file ``path`` is missing or is
    a folder: ``what`` names it (``ONNX model``, ``weights``), ``fix`` is a sentence saying what to pass."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{what} {path} is a folder, not a file. {fix}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist. {fix}")
