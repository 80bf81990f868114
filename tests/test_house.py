"""The house rules of the package, read from its source: no import cycles, no private names taken across
packages, no module over about 400 lines without a stated reason, torch-free rooms that stay torch-free, and
function-level (lazy) imports only where they put off a heavy package or say why."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RUNTIME_ONLY_BLOCKER

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


# Third-party packages a function-level import may put off: the optional extras (pyproject), which the torch-free
# rooms and the CLI's start do without. Any other lazy import says why with a `# lazy:` comment.
HEAVY = {"torch", "torchvision", "ultralytics", "onnx", "onnxslim", "onnxruntime", "tensorrt", "pycuda", "cuda",
         "albumentations", "matplotlib", "modelopt", "torch_pruning", "faster_coco_eval", "cv2"}
LAZY_NOTE = "# lazy:"
Import = ast.Import | ast.ImportFrom


def _targets(package: str, node: Import) -> list[str]:
    """Absolute names ``node`` imports (``from a import b``: ``a`` and ``a.b``), third-party ones included."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: the modules importing ``name`` runs."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _run_at_import(tree: ast.Module) -> list[Import]:
    """The imports a module runs when it is imported: outside functions and ``if TYPE_CHECKING:`` blocks."""
    found: list[Import] = []

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            else:
                visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return found


def _lazy_imports(tree: ast.Module) -> list[Import]:
    """The imports inside functions (methods and nested functions included), each once."""
    functions = [f for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    found = {(n.lineno, n.col_offset): n for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return [found[k] for k in sorted(found)]


def _pulled(name: str, found: dict[str, set[str]], heavy: set[str]) -> set[str]:
    """The ``heavy`` packages that importing ``name`` imports (``found``: those of each detdistill module)."""
    top = name.split(".")[0]
    return {top} if top in heavy else set().union(*(found.get(m, set()) for m in _with_parents(name)))


def _heavy_modules(imports: dict[str, set[str]], heavy: set[str]) -> dict[str, set[str]]:
    """For each module of ``imports`` (module -> what it imports when imported), the ``heavy`` packages it
    imports when imported: itself, through a module it imports, or through that module's package."""
    found: dict[str, set[str]] = {m: set() for m in imports}
    grew = True
    while grew:
        grew = False
        for module, names in imports.items():
            more = set().union(*(_pulled(n, found, heavy) for n in names)) - found[module]
            if more:
                found[module] |= more
                grew = True
    return found


def _unexplained(source: str, package: str, own: set[str], pulled: Callable[[str], set[str]]) -> list[int]:
    """Lines of the lazy imports in ``source`` that put off no heavy package the module (``own``: those it
    imports anyway) does without, and carry no ``# lazy:`` note: on their line, on a comment line right
    above, or on the first of a run of such imports (one note for the run)."""
    lines = source.splitlines()
    light = {n.end_lineno: n for n in _lazy_imports(ast.parse(source))
             if not any(pulled(t) - own for t in _targets(package, n))}

    def noted(node: Import) -> bool:
        if any(LAZY_NOTE in line for line in lines[node.lineno - 1: node.end_lineno]):
            return True
        above = node.lineno - 1
        if above in light:
            return noted(light[above])
        return above > 0 and lines[above - 1].lstrip().startswith(LAZY_NOTE)

    return [n.lineno for n in light.values() if not noted(n)]


def _package_pulled() -> Callable[[str], set[str]]:
    imports = {}
    for module, path in MODULES.items():
        package = _package_of(module, path)
        imports[module] = {t for n in _run_at_import(ast.parse(path.read_text())) for t in _targets(package, n)}
    found = _heavy_modules(imports, HEAVY)
    return lambda name: _pulled(name, found, HEAVY)


def test_heavy_finder_follows_imports_and_packages():
    imports = {"p": set(), "p.light": {"os", "p.mid"}, "p.mid": {"numpy"}, "p.deep": {"p.via", "cv2"},
               "p.via": {"torch.nn"}, "q": {"cv2"}, "q.sub": set()}
    found = _heavy_modules(imports, {"torch", "cv2"})
    assert {m: v for m, v in found.items() if v} == {"p.deep": {"torch", "cv2"}, "p.via": {"torch"}, "q": {"cv2"}}
    assert _pulled("q.sub", found, {"cv2"}) == {"cv2"} and _pulled("p.light", found, {"torch", "cv2"}) == set()


def test_unexplained_lazy_imports_are_found():
    source = textwrap.dedent(
        """
        import os

        def f():
            import json
            import torch  # lazy: torch (covers only itself)
            from .light import a
            # lazy: a plugin, registered on call
            from .light import b
            from .light import c
            from . import heavy
            from .other import x

        def g():
            if True:
                from .light import d

        def h():
            import typing  # noqa  (no note)
            import cv2
        """
    )
    found = _heavy_modules({"pkg.heavy": {"torch"}, "pkg.other": {"cv2"}}, {"torch", "cv2"})
    pulled = lambda name: _pulled(name, found, {"torch", "cv2"})  # noqa: E731
    assert _unexplained(source, "pkg", set(), pulled) == [5, 7, 16, 19]
    # in a module that imports cv2 anyway, putting off cv2 is no reason
    assert _unexplained(source, "pkg", {"cv2"}, pulled) == [5, 7, 12, 16, 19, 20]


def test_run_at_import_skips_functions_and_type_checking():
    tree = ast.parse(textwrap.dedent(
        """
        import a
        try:
            import b
        except ImportError:
            b = None
        if TYPE_CHECKING:
            import c
        else:
            import d
        class K:
            import e
            def m(self):
                import f
        """
    ))
    assert [n.names[0].name for n in _run_at_import(tree)] == ["a", "b", "d", "e"]
    assert [n.names[0].name for n in _lazy_imports(tree)] == ["f"]


def test_lazy_imports_put_off_a_heavy_package_or_say_why():
    """A function-level import puts off a heavy package (HEAVY, or a detdistill module that imports one when
    imported) that its module does without, or says with ``# lazy:`` why it waits; any other belongs at the
    top of its module."""
    pulled = _package_pulled()
    bad = []
    for module, path in MODULES.items():
        bad += [f"{path.relative_to(PACKAGE.parent)}:{line}"
                for line in _unexplained(path.read_text(), _package_of(module, path), pulled(module), pulled)]
    assert bad == [], "move these imports to the module's top, or say why they wait with a `# lazy:` comment"



@pytest.mark.parametrize("module", ["detdistill.runtime", "detdistill.demo.app", "detdistill.data.image_lists",
                                    "detdistill.data.dataset", "detdistill.data.class_map", "detdistill.export.evaluate",
                                    "detdistill.export.bench"])
def test_torch_free_rooms_import_without_torch(module):
    """What a Jetson without torch runs (runtime, demo, eval, bench) and the readers and class maps they share."""
    out = subprocess.run([sys.executable, "-c", RUNTIME_ONLY_BLOCKER + f"import {module}"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
