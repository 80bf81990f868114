"""The report as Markdown (``report.md``): what the pipeline prints at the end."""

from __future__ import annotations

from .curves import Curves, training_notes
from .records import PipelineReport
from .tables import (Table, artifact_table, evaluation_caption, relative_caption, robustness_caption, robustness_table,
                     stage_table, training_table)


def md_text(text: object) -> str:
    """Text for Markdown prose and table cells: pipes and angle brackets escaped, one line."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return out.replace("<", "\\<").replace(">", "\\>").replace("\n", " ")


def md_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table; text columns left, numbers right aligned."""
    if not table.rows:
        return "_none_"
    align = ["---" if i in table.text_columns else "---:" for i in range(len(table.header))]
    lines = [[md_text(c) for c in line] for line in (table.header, *table.rows)]
    lines.insert(1, align)
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _md_fence(text: str) -> str:
    ticks = 3
    while "`" * ticks in text:
        ticks += 1
    return "`" * ticks


def render_markdown(report: PipelineReport, curves: list[Curves]) -> str:
    """The whole report as Markdown."""
    notes = report.notes + training_notes(curves)
    fence = _md_fence(report.config_text)
    parts = [
        f"# {md_text(report.title)}",
        f"- **machine:** {md_text(report.machine)}\n- **data:** `{report.data}`\n- **imgsz:** {report.imgsz}",
        "## Artifacts",
        md_table(artifact_table(report)),
        *([md_text(scope)] if (scope := evaluation_caption(report)) else []),
        md_text(relative_caption(report)),
        *(["## Robustness", md_table(robust), md_text(robustness_caption(report))]
          if (robust := robustness_table(report)) else []),
        "## Stages",
        md_table(stage_table(report)),
        "## Notes",
        "\n".join(f"- {md_text(n)}" for n in notes) or "_none_",
        "## Training",
        md_table(training_table(curves)),
        "## Recipe",
        f"{fence}yaml\n{report.config_text.rstrip()}\n{fence}",
    ]
    return "\n\n".join(parts) + "\n"
