"""Checks of a model file before and while a runtime opens it (torch-free)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class EmptyModelError(ValueError):
    """A model file of 0 bytes (an export, build or copy that stopped before writing anything)."""


class UnreadableModelError(Exception):
    """A model file its runtime cannot parse (truncated, or not a model at all).

    Not a ValueError: CLI verbs turn their ValueErrors into one line themselves, and this one reaches the CLI's
    error boundary instead, whose ``DETDISTILL_DEBUG=1`` shows its traceback (the parser's error, as its cause).
    """


def require_nonempty(path: str | Path) -> None:
    """Raise :class:`EmptyModelError` for a 0-byte model file, which ONNX Runtime would only call 'No graph'."""
    path = Path(path)
    if path.stat().st_size == 0:
        fix = ("build it again with `detdistill build`" if path.suffix.lower() in (".engine", ".plan")
               else "export it again with `detdistill export`")
        raise EmptyModelError(f"model {path} is empty (0 bytes: an export or copy that did not finish?); {fix}")


@contextmanager
def opening_onnx(path: str | Path) -> Iterator[None]:
    """Around the opening of an ONNX model: its parse error becomes :class:`UnreadableModelError`, worded as the
    CLI words an unreadable ONNX file ("<path> is not a readable ONNX model (<cause>); export it again ...")."""
    try:
        yield
    except Exception as e:
        from ..cli_errors import error_line, file_kind  # lazy: typer (the CLI's one wording of an unreadable file)

        if file_kind(e) != "onnx":
            raise
        raise UnreadableModelError(error_line(e, [str(path)])) from e
