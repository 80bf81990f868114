"""YAML read as users write it: ``lr0: 1e-4`` is a number.

PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-4``), so ``1e-4`` would load as the string
``'1e-4'`` and ultralytics would refuse it as a learning rate. YAML 1.2 and ultralytics' own command line
read it as a number; so do detdistill's recipes, pipeline files and ``key=value`` train arguments.
A key given twice in one mapping is an error: PyYAML would keep the last one without a word (two ``train:``
blocks, the second with ``epochs: 100``, would train 100 epochs).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


MERGE_TAG = "tag:yaml.org,2002:merge"


class NumberLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads exponent floats without a dot (``1e-4``, ``5E3``, ``-2e+2``) and
    refuses a key repeated in one mapping. A merge key (``<<: *defaults``) is no repeat: the mapping's own keys
    override the merged ones, as YAML defines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # SafeLoader's construct_mapping merges it
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice (first on line {seen[key].line + 1}): the second would silently "
                    "replace the first; keep one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def yaml_problem(error: BaseException) -> str:
    """A YAML error in one line: its problem and where (``found the key 'losses' twice ..., line 4 column 1``),
    without PyYAML's multi-line excerpt of the text."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return " ".join(str(error).split())
    return f"{getattr(error, 'problem', None) or error}, line {mark.line + 1} column {mark.column + 1}"


def load_yaml(text: str) -> Any:
    """``text`` parsed as YAML (safe: plain data only), exponent floats as numbers."""
    return yaml.load(text, Loader=NumberLoader)  # noqa: S506 (a SafeLoader subclass)
