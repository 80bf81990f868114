"""The pipeline's report: one Markdown file and one self-contained HTML file from its results.

The runner measures every artifact and hands the numbers over as a :class:`PipelineReport`;
:func:`write_report` turns them into ``report.md`` (:mod:`.markdown`) and ``report.html``
(:mod:`.html_page`), both built from the same tables (:mod:`.tables`). The HTML page carries its own CSS
and its plots (:mod:`.plots`) as inline base64 PNG, so it opens anywhere, offline, as one file; without
matplotlib it still has every table and says why the plots are missing.
"""

from __future__ import annotations

from pathlib import Path

from ... import atomic
from .curves import Curves, read_results_csv, training_notes
from .html_page import render_html
from .markdown import render_markdown
from .plots import make_plots
from .records import ArtifactResult, PipelineReport, TrainingRun


def write_report(report: PipelineReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = [read_results_csv(run.name, run.results_csv) for run in report.training]
    plots, plot_notes = make_plots(report, curves)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic.write_text(md_path, render_markdown(report, curves))
    notes = report.notes + training_notes(curves) + plot_notes
    atomic.write_text(html_path, render_html(report, curves, plots, notes))
    return md_path, html_path


__all__ = [
    "ArtifactResult",
    "Curves",
    "PipelineReport",
    "TrainingRun",
    "read_results_csv",
    "render_html",
    "render_markdown",
    "write_report",
]
