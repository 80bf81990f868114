"""How every ``detdistill`` verb reports bad input: one line ``error: <problem and fix>``, no traceback.

Verbs call :func:`fail` for what they check themselves. :class:`ErrorBoundary`, the ``detdistill`` app's
command group, turns what escapes a verb into such a line too: detdistill's own errors, unreadable
files (truncated checkpoints, corrupt ONNX, bad JSON/YAML, images OpenCV cannot read) and ultralytics'
argument checks. Anything else is a bug and keeps its traceback; ``DETDISTILL_DEBUG=1`` shows the
traceback of every error. Ctrl-C prints how to go on and exits with 130.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
import yaml
from typer.core import TyperGroup

from detdistill.yaml_numbers import yaml_problem

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# kind -> (file suffixes, what is wrong with such a file, how to fix it)
FILE_KINDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "checkpoint": ((".pt", ".pth", ".ckpt"), "is not a loadable PyTorch checkpoint",
                   "re-download it, or rerun the training or export that wrote it"),
    "onnx": ((".onnx",), "is not a readable ONNX model", "export it again with `detdistill export`"),
    "json": ((".json",), "is not valid JSON", "fix the file or delete it"),
    "yaml": ((".yaml", ".yml"), "is not valid YAML", "fix its syntax"),
    "image": ((".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".mp4", ".avi", ".mov", ".mkv"),
              "could not be read by OpenCV", "check that it is a readable image or video"),
}
ONNX_ERRORS = {"google.protobuf.message.DecodeError", "onnxruntime.capi.onnxruntime_pybind11_state.InvalidProtobuf",
               "onnxruntime.capi.onnxruntime_pybind11_state.Fail"}
USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# third-party module -> the extra that installs it (pyproject), for a verb or a code path that needs it
OPTIONAL_DEPENDENCIES = {"cv2": "detdistill[runtime]", "onnxruntime": "detdistill[runtime]",
                         "faster_coco_eval": "detdistill[runtime]", "onnx": "detdistill[export]",
                         "onnxslim": "detdistill[export]", "torch": "detdistill[train]",
                         "torchvision": "detdistill[train]", "ultralytics": "detdistill[train]",
                         "torch_pruning": "detdistill[train]", "albumentations": "detdistill[robust]",
                         "tensorrt": "detdistill[tensorrt]", "pycuda": "detdistill[tensorrt]"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: <message>`` (naming the problem and the fix) to stderr and exit with ``code``."""
    typer.secho(f"error: {one_line(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def path_parser(option: str, expects: str) -> Callable[[str], Path]:
    """A typer ``parser=`` for the path option ``option``: an empty value is refused, since ``Path("")`` would
    silently be the current folder. ``expects`` says what to pass instead, e.g. 'a folder of images'."""

    def parse(value: str) -> Path:
        if not str(value).strip():
            fail(f"{option} is empty: pass {expects} (an empty path would silently mean the current folder; "
                 "use . for it)")
        return Path(value)

    return parse


def one_line(text: str) -> str:
    """``text`` without colour codes, its lines joined with '; '."""
    lines = [" ".join(line.split()) for line in _ANSI.sub("", str(text)).splitlines()]
    return "; ".join(line for line in lines if line)


def _class_names(exc: BaseException) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}


def file_kind(exc: BaseException) -> str | None:
    """Which kind of unreadable file ``exc`` reports (a key of :data:`FILE_KINDS`), or None."""
    text = str(exc)
    if isinstance(exc, (EOFError, pickle.UnpicklingError)) or "not a loadable checkpoint" in text \
            or (isinstance(exc, RuntimeError) and "PytorchStreamReader" in text):
        return "checkpoint"
    names = _class_names(exc)
    if names & ONNX_ERRORS:
        return "onnx"
    if isinstance(exc, json.JSONDecodeError):
        return "json"
    if isinstance(exc, yaml.YAMLError):
        return "yaml"
    if "cv2.error" in names:
        return "image"
    return None


def _root_cause(exc: BaseException) -> str:
    """The first sentence of the innermost explicit cause, e.g. 'PytorchStreamReader failed reading zip archive'."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if getattr(exc, "problem_mark", None) is not None:  # yaml: the problem and where in the file
        return yaml_problem(exc)
    text = one_line(str(exc)) or type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    if "is not a loadable checkpoint" in text and "(" in text:  # ultralytics wraps torch's message in (...)
        text = text.split("(", 1)[1]
    return re.split(r"\.\s|\.$|; ", text, maxsplit=1)[0][:160]


def _is_file(text: Any) -> bool:
    try:
        return isinstance(text, (str, os.PathLike)) and len(str(text)) < 4096 and Path(text).is_file()
    except (OSError, ValueError):
        return False


def culprit(exc: BaseException, argv: Sequence[str], suffixes: tuple[str, ...]) -> str | None:
    """The file an error is about: a command-line file the message names, else the innermost file the failing
    code was handling (a path with a matching suffix among its local variables), else a command-line file."""
    values = [a.split("=", 1)[1] if "=" in a and not a.startswith("-") else a for a in argv]
    given = [v for v in values if Path(v).suffix.lower() in suffixes and _is_file(v)]
    named = [v for v in given if Path(v).name in str(exc)]
    if named:
        return named[0]
    tb, frames = exc.__traceback__, []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, (str, Path)) and Path(str(value)).suffix.lower() in suffixes and _is_file(value):
                return str(value)
    return given[0] if given else None


def error_line(exc: BaseException, argv: Sequence[str]) -> str | None:
    """The one-line message for an error reported without a traceback; None for any other (a bug)."""
    kind = file_kind(exc)
    if kind is not None:
        suffixes, problem, fix = FILE_KINDS[kind]
        where = culprit(exc, argv, suffixes) or f"a {kind} file"
        return f"{where} {problem} ({_root_cause(exc)}); {fix}"
    if isinstance(exc, SyntaxError) and "is not a valid YOLO argument" in str(exc):  # ultralytics' cfg check
        return f"invalid training argument: {one_line(str(exc))}"
    if isinstance(exc, ModuleNotFoundError) and (package := (exc.name or "").split(".")[0]) in OPTIONAL_DEPENDENCIES:
        return f"this command needs {package}, which is not installed here: pip install '{OPTIONAL_DEPENDENCIES[package]}'"
    if isinstance(exc, USER_OS_ERRORS):
        return f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else one_line(str(exc))
    if any(c.__module__.split(".")[0] == "detdistill" for c in type(exc).__mro__):
        return one_line(str(exc)) or type(exc).__name__
    return None


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name V``, ``--name=V`` or ``name=V`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        for prefix in (f"--{name}=", f"{name}="):
            if arg.startswith(prefix):
                return arg[len(prefix):]
    return None


def _latest_last_pt(argv: Sequence[str], since: float) -> str | None:
    """The ``last.pt`` a ``detdistill train`` written since ``since`` left, if one is found."""
    project = _option(argv, "project")
    roots = [Path(project)] if project else [Path("runs/detect")]
    utils = sys.modules.get("ultralytics.utils")
    if not project and utils is not None and hasattr(utils, "RUNS_DIR"):
        roots.insert(0, Path(utils.RUNS_DIR) / "detect")
    found = [p for root in roots for p in root.glob("*/weights/last.pt") if p.stat().st_mtime >= since]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else None


def interrupted_line(argv: Sequence[str], since: float) -> str:
    """What to print on Ctrl-C: that the command stopped, and how to go on."""
    verb = argv[0] if argv else ""
    if verb == "train":
        last = _option(argv, "resume") or _latest_last_pt(argv, since) or "<run>/weights/last.pt"
        return f"interrupted; to go on, run `detdistill train --resume {last}`"
    if verb in ("run", "quickstart"):
        return f"interrupted; to go on, rerun the same command: `detdistill {shlex.join(argv)}` " \
               "(finished stages are reused, an interrupted training resumes from its last.pt)"
    return "interrupted"


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Within the block, a ``UserWarning`` raised on behalf of detdistill's own code prints as one ``warning: ...``
    line, not as Python's ``path:line: UserWarning`` with a source line; other warnings print as Python prints them."""
    original = warnings.showwarning
    package = Path(__file__).resolve().parent

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(package):
            typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


class ErrorBoundary(TyperGroup):
    """The ``detdistill`` command group: every verb runs inside one error boundary (see the module doc)."""

    argv: list[str] = []
    started: float = 0.0

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        self.argv, self.started = list(args), time.time()
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        try:
            with warnings_as_lines():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.secho(interrupted_line(self.argv, self.started), fg=typer.colors.YELLOW, err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("DETDISTILL_DEBUG", "") not in ("", "0"):
                raise
            message = error_line(exc, self.argv)
            if message is None:
                raise
            fail(message)
