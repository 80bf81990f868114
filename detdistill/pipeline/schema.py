"""Recipe sections as dataclasses: how a YAML mapping becomes one, with unknown keys refused by name.

A section is a frozen dataclass. Its plain fields are recipe keys with their defaults (a ``null`` value
takes the default, or turns the key off for a field made with :func:`null_means_off`); a field made with
:func:`section` is a sub-section (another such dataclass), one made with :func:`free_form` a mapping passed
on as it is (ultralytics arguments, a class map). :func:`build` fills in defaults and names the first
unknown key; :func:`schema_of` gives the ``{key: default}`` tree that docs/pipeline.md documents.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any


class PipelineError(ValueError):
    """A pipeline recipe field is missing, unknown or out of range."""


def read_from(path: str | Path) -> str:
    """Where a missing relative ``path`` of a recipe was looked for (the folder ``detdistill run`` runs in); empty
    for an absolute one."""
    return "" if Path(path).is_absolute() else f" (relative paths are read from the folder you run in, {Path.cwd()})"


def section(cls: type, *, off_unless_given: bool = False, null_turns_off: bool = False) -> Any:
    """A sub-section field of type ``cls``.

    Left out, it gets its defaults, or is off (None) with ``off_unless_given`` (an alternative such as
    ``data.shapes``, or an opt-in such as ``export.int8.qad``). Given as ``null``, it is off when it can be
    (``null_turns_off`` or ``off_unless_given``), else it gets its defaults.
    """
    meta = {"section": cls, "off_unless_given": off_unless_given, "null_turns_off": null_turns_off}
    if off_unless_given:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(default_factory=cls, metadata=meta)


def null_means_off(default: Any = None, *, factory: Any = None) -> Any:
    """A plain field whose ``null`` in the recipe means None (off) rather than its default (``distill.recipe``);
    ``factory`` makes a mutable default (``export.engines``)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"null_means_off": True})
    return dataclasses.field(default=default, metadata={"null_means_off": True})


def free_form() -> Any:
    """A mapping of arbitrary keys (checked where it is used, e.g. ultralytics train arguments)."""
    return dataclasses.field(default_factory=dict, metadata={"free_form": True})


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return copy.deepcopy(f.default)
    return f.default_factory()  # type: ignore[misc]


def schema_of(cls: type) -> dict[str, Any]:
    """``{key: default}`` of a section; a sub-section's default is its own schema, a free-form mapping's ``{}``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "section" in f.metadata:
            out[f.name] = schema_of(f.metadata["section"])
        elif f.metadata.get("free_form"):
            out[f.name] = {}
        else:
            out[f.name] = _default(f)
    return out


def paths_where(cls: type, test: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the fields (at any depth) whose metadata passes ``test``."""
    out = set()
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        if test(f.metadata):
            out.add(path)
        if "section" in f.metadata:
            out |= paths_where(f.metadata["section"], test, path)
    return out


def build(cls: type, given: Any, where: str = "", refused: dict[str, str] | None = None) -> Any:
    """An instance of section ``cls`` from the mapping ``given`` (None: all defaults).

    ``refused``: keys that are not settings, by dotted path, with why (a clearer error than "unknown field").
    """
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise PipelineError(f"{where or 'the recipe'}: expected a mapping, got {type(given).__name__} {given!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in given:
        path = f"{where}.{key}" if where else str(key)
        if refused and path in refused:
            raise PipelineError(f"{path}: {refused[path]}")
        if key not in fields:
            raise PipelineError(f"{path}: unknown field; {where or 'the recipe'} accepts {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        path = f"{where}.{name}" if where else name
        value = given.get(name)
        if "section" in f.metadata:
            off = f.metadata["off_unless_given"] or f.metadata["null_turns_off"]
            if name not in given:
                values[name] = None if f.metadata["off_unless_given"] else build(f.metadata["section"], None, path)
            elif value is None:
                values[name] = None if off else build(f.metadata["section"], None, path)
            else:
                values[name] = build(f.metadata["section"], value, path, refused)
        elif f.metadata.get("free_form"):
            if value is not None and not isinstance(value, dict):
                raise PipelineError(f"{path}: expected a mapping of key: value, got {value!r}")
            values[name] = dict(value or {})
        elif value is None:
            values[name] = None if name in given and f.metadata.get("null_means_off") else _default(f)
        else:
            values[name] = value
    return cls(**values)


def as_dict(section_value: Any) -> Any:
    """A section as the plain mapping it was built from (defaults filled in); None stays None."""
    return None if section_value is None else dataclasses.asdict(section_value)
