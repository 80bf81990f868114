"""The report as one self-contained HTML page (``report.html``): its own CSS, its plots inline as base64 PNG."""

from __future__ import annotations

import base64
import html

from .curves import Curves
from .records import PipelineReport
from .tables import (Table, artifact_table, evaluation_caption, relative_caption, robustness_caption, robustness_table,
                     stage_table, training_table)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
h1{border-bottom:2px solid #4c72b0;padding-bottom:.2em}
h2{margin-top:1.6em;color:#333}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em;white-space:nowrap}
th{background:#eef2f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;border:1px solid #ddd}
.muted{color:#666;font-size:.9em}
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def html_table(table: Table) -> str:
    """An HTML table; every cell escaped, number columns right aligned."""
    if not table.rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_esc(h)}</th>" for h in table.header)
    body = "\n".join(
        "<tr>" + "".join(_html_cell(c, i not in table.text_columns) for i, c in enumerate(row)) + "</tr>"
        for row in table.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _html_cell(text: str, numeric: bool) -> str:
    return f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>"


def html_figure(caption: str, png: bytes) -> str:
    """An inline PNG figure with its caption."""
    data = base64.b64encode(png).decode("ascii")
    cap = _esc(caption)
    img = f'<img src="data:image/png;base64,{data}" alt="{cap}">'
    return f"<figure>{img}<figcaption>{cap}</figcaption></figure>"


def render_html(
    report: PipelineReport, curves: list[Curves], plots: list[tuple[str, bytes]], notes: list[str]
) -> str:
    """The whole report as one self-contained HTML page."""
    facts = "".join(
        f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
        for k, v in (("machine", report.machine), ("data", report.data), ("imgsz", report.imgsz))
    )
    note_items = "".join(f"<li>{_esc(n)}</li>" for n in notes) or "<li>none</li>"
    figures = "\n".join(html_figure(c, p) for c, p in plots) or '<p class="muted">no plots</p>'
    scope = f'<p>{_esc(caption)}</p>\n' if (caption := evaluation_caption(report)) else ""
    table = robustness_table(report)
    robust = (f'<h2>Robustness</h2>\n{html_table(table)}\n<p class="muted">{_esc(robustness_caption(report))}</p>'
              if table else "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(report.title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{_esc(report.title)}</h1>
<dl>{facts}</dl>
<h2>Artifacts</h2>
{html_table(artifact_table(report))}
{scope}<p class="muted">{_esc(relative_caption(report))}</p>
{robust}
<h2>Plots</h2>
{figures}
<h2>Stages</h2>
{html_table(stage_table(report))}
<h2>Notes</h2>
<ul>{note_items}</ul>
<h2>Training</h2>
{html_table(training_table(curves))}
<h2>Recipe</h2>
<pre><code>{_esc(report.config_text)}</code></pre>
</body>
</html>
"""
