"""The user documentation: README size, the pipeline reference against the config schema, links, and no
references to anything outside the repository. Needs no fixtures, torch or ultralytics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detdistill.pipeline import config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PIPELINE_DOC = ROOT / "docs" / "pipeline.md"
USER_DOCS = [README, ROOT / "CHANGELOG.md", *DOCS]

README_MAX_BYTES = 15_500
# Nothing a user's checkout lacks: the shared fixtures folder, design notes, benchmark run folders.
OUTSIDE = ("../shared", "DESIGN.md", "runs/bench")
# The one allowed mention: where the tests read their fixtures, in the README's development section.
FIXTURES_NOTE = ("the test fixtures folder `../shared/fixtures` beside the checkout "
                 "(tests skip with a reason when absent)")
# The README describes the product as it is, not how it got there.
HISTORY = ("earlier default", "in an earlier run", "the issue's target", "issue's target")

FENCE = re.compile(r"^(`{3,})[^\n]*\n.*?^\1\s*$", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _without_code_blocks(text: str) -> str:
    return FENCE.sub("", text)


def _schema_paths(schema: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Every key of the pipeline schema as a dotted path, with its default, sub-sections included."""
    out = []
    for key, default in schema.items():
        path = f"{prefix}.{key}" if prefix else key
        out.append((path, default))
        if isinstance(default, dict) and default and path not in config.FREE_FORM:
            out.extend(_schema_paths(default, path))
    return out


def _yaml_scalar(value: object) -> str:
    """How a default is written in the docs (YAML flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    return str(value)


def _rows(text: str) -> dict[str, str]:
    """Table rows keyed by their first cell when it is a single `code` span."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows.setdefault(m.group(1), line)
    return rows


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _without_code_blocks(md.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"distillers.md", "pipeline.md", "deploy.md", "benchmarks.md", "troubleshooting.md"} <= names


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; keep it under {README_MAX_BYTES} (detail: docs/)"


def test_readme_starts_with_the_two_commands():
    first_block = FENCE.search(README.read_text())
    assert first_block, "README.md has no code block"
    block = first_block.group(0)
    assert "YOLO_OFFLINE=1 detdistill quickstart" in block
    assert "YOLO_OFFLINE=1 python3 -m pytest -q tests" in block


def test_every_pipeline_key_is_documented():
    rows = _rows(PIPELINE_DOC.read_text())
    paths = _schema_paths(config.SCHEMA)
    assert len(paths) > 40  # the walk reached the nested sections
    missing = [p for p, _ in paths if p not in rows]
    assert not missing, f"docs/pipeline.md has no table row for: {', '.join(missing)}"


def test_documented_defaults_match_the_schema():
    rows = _rows(PIPELINE_DOC.read_text())
    wrong = []
    for path, default in _schema_paths(config.SCHEMA):
        if default is None or (isinstance(default, dict) and default and path not in config.FREE_FORM):
            continue  # no default, or a section whose keys have their own rows
        cells = [c.strip() for c in rows.get(path, "").split("|")]
        if len(cells) < 4 or f"`{_yaml_scalar(default)}`" not in cells[3]:
            wrong.append(f"{path} (default {_yaml_scalar(default)})")
    assert not wrong, f"docs/pipeline.md gives another default for: {', '.join(wrong)}"


def test_pipeline_doc_has_no_stale_keys():
    known = {p for p, _ in _schema_paths(config.SCHEMA)}
    stale = [k for k in _rows(PIPELINE_DOC.read_text()) if k not in known]
    assert not stale, f"docs/pipeline.md documents keys the schema lacks: {', '.join(stale)}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_no_reference_outside_the_repository(doc: Path):
    text = doc.read_text()
    if doc == README:
        start = text.index("## Development")
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end
        section = " ".join(text[start:end].split())
        text = text[:start] + section.replace(FIXTURES_NOTE, "", 1) + text[end:]
    found = [s for s in OUTSIDE if s in text]
    assert not found, f"{doc.name} refers to {found}, which a user's checkout does not have"


def test_readme_has_no_history():
    text = README.read_text().lower()
    found = [s for s in HISTORY if s in text]
    assert not found, f"README.md tells history ({found}); it belongs in git and CHANGELOG.md"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path):
    broken = []
    for target in LINK.findall(_without_code_blocks(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.is_relative_to(ROOT) or not dest.exists():
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{doc.name}: broken links: {'; '.join(broken)}"


def test_documented_verbs_exist():
    import importlib

    from detdistill import cli

    for module in getattr(cli, "VERB_MODULES", ()):  # verbs whose extra is not installed are not registered
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            pytest.skip(f"{module} needs {e.name}, which is not installed")
    app = cli.app
    verbs = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    used = set()
    for doc in USER_DOCS:
        text = doc.read_text()
        used |= set(re.findall(r"`detdistill ([a-z][\w-]*)", text))
        for block in (m.group(0) for m in FENCE.finditer(text)):
            used |= set(re.findall(r"(?:^[ \t]*|YOLO_OFFLINE=1 )detdistill ([a-z][\w-]*)", block, re.M))
    unknown = sorted(used - verbs)
    assert not unknown, f"the docs use detdistill verbs that do not exist: {', '.join(unknown)}"
