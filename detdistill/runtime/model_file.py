"""Checks of a model file before and while a runtime opens it (torch-free)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..file_checks import require_present


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


EXPORT_ONE = "Export one with `detdistill export`."  # the fix for a missing ONNX model


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive: how a PyTorch checkpoint begins, whatever its suffix


def is_pytorch_checkpoint(path: str | Path) -> bool:
    """Whether the file ``path`` begins as a ``torch.save`` archive does, whatever its suffix."""
    with Path(path).open("rb") as f:
        return f.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def require_model_file(path: str | Path, kind: str, fix: str) -> None:
    """Raise for what a runtime cannot open as a ``kind`` model (``ONNX``, ``TensorRT``): a missing path or a folder
    (``FileNotFoundError``), a 0-byte file (:class:`EmptyModelError`) or a PyTorch checkpoint (``ValueError``, with
    the export command). ``fix`` says how to make one (``Export one with `detdistill export`.``)."""
    path = Path(path)
    require_present(path, f"{kind} model", fix)
    require_nonempty(path)
    if is_pytorch_checkpoint(path):
        raise ValueError(f"{path} is a PyTorch checkpoint, not an exported {kind} model: export it with "
                         f"`detdistill export {path}` (or score the .pt itself with `detdistill eval`)")


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
