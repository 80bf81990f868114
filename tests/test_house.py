"""The house rules of the package, read from its source: no import cycles, no private names taken across
packages, no module over about 400 lines without a stated reason, and torch-free rooms that stay torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "detdistill"
MAX_LINES = 400
LONG_REASON = "over 400 lines because"  # what a longer module's docstring must say, with the reason


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


MODULES = _modules()


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` of every detdistill import in ``path``, lazy ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("detdistill"):
                out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("detdistill")]
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        deps = set()
        for target, names in _imports(module, path):
            deps |= {f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES} or {target}
        graph[module] = {d for d in deps if d in MODULES and d != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == [], "modules that import each other (lazy imports count too)"


def test_no_private_names_across_packages():
    bad = []
    for module, path in MODULES.items():
        own = _package_of(module, path)
        for target, names in _imports(module, path):
            target_pkg = target if MODULES.get(target, Path()).name == "__init__.py" else target.rpartition(".")[0]
            if target_pkg != own:
                bad += [f"{module} takes {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert bad == []


def test_long_modules_say_why():
    long = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    unexplained = [f"{m} ({n} lines)" for m, n in long.items()
                   if n > MAX_LINES and LONG_REASON not in (ast.get_docstring(ast.parse(MODULES[m].read_text())) or "")]
    assert unexplained == []


BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "torchvision", "ultralytics"}:
                raise ImportError(f"{name} is blocked")
            return None

    sys.meta_path.insert(0, Block())
    """
)


@pytest.mark.parametrize("module", ["detdistill.runtime", "detdistill.demo.app", "detdistill.data.image_lists",
                                    "detdistill.data.dataset", "detdistill.export.evaluate", "detdistill.export.bench"])
def test_torch_free_rooms_import_without_torch(module):
    """What a Jetson without torch runs (runtime, demo, eval, bench) and the readers they share."""
    out = subprocess.run([sys.executable, "-c", BLOCK_TORCH + f"import {module}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
