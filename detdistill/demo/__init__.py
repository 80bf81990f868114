"""Live detection demo: camera/file/stream sources, pipelined stages, overlay, recorder, stats.

Runs on a bare Jetson: imports numpy, OpenCV and ``detdistill.runtime`` only (never torch or
ultralytics). Entry point: :func:`run_demo` (CLI: ``detdistill demo``).
"""

from .app import run_demo
from .capture import Frame, FrameSource, SourceError
from .sources import SourceSpec, open_source, parse_source
from .stats import Summary

__all__ = ["run_demo", "open_source", "parse_source", "SourceSpec", "FrameSource", "Frame",
           "SourceError", "Summary"]
