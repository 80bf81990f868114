"""Distillation recipes: which losses, their weights and parameters, and a schedule, read from YAML.

A recipe file looks like::

    losses:
      - {type: cwd, weight: 1.0, tau: 1.0}         # feature imitation on P3-P5
      - {type: logit, weight: 1.0, temperature: 1.0, dense: true}  # dense: every anchor, not just the region's
      - {type: box, weight: 1.0, temperature: 10}  # LD on DFL heads, decoded boxes otherwise
    region: teacher           # anchor weights for logit/box/l2/pkd/mgd losses: teacher | gt | teacher+gt | all
    adapter_init: fit         # feature losses' adapters: fitted by least squares on the first batch, or random
    teacher_scale: 1.0        # teacher sees the batch resized by this factor: at 2 or 4 its levels P4/P5 pair
                              # with the student's P3/P4 (box losses allowed), otherwise its maps are resampled
    schedule: {kind: cosine, final: 0.1, stop_last: close_mosaic}

Every error names the offending field and what it accepts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .losses import loss_types
from .registry import RecipeError
from ..recipes import RECIPES_DIR, builtin_recipes, resolve_recipe_name
from ..yaml_numbers import load_yaml, yaml_problem
from .schedule import KINDS, Schedule


REGIONS = ("teacher", "gt", "teacher+gt", "all")
ADAPTER_INITS = ("fit", "random")
# teacher image sizes at which its pyramid levels coincide with the student's (same size, or shifted by 1-2 levels)
ALIGNED_SCALES = (1.0, 2.0, 4.0)
MAX_TEACHER_SCALE = 4.0  # the teacher at 4x the student's input already costs 16 forward passes' worth


@dataclass(frozen=True)
class LossSpec:
    type: str
    weight: float
    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return loss_types()[self.type].family


@dataclass(frozen=True)
class Recipe:
    losses: tuple[LossSpec, ...]
    schedule: Schedule = Schedule()
    region: str = "teacher"
    teacher_scale: float = 1.0
    adapter_init: str = "fit"
    source: str = "<dict>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "losses": [{"type": s.type, "weight": s.weight, "name": s.name, **s.params} for s in self.losses],
            "schedule": {"kind": self.schedule.kind, "final": self.schedule.final, "stop_last": self.schedule.stop_last},
            "region": self.region,
            "teacher_scale": self.teacher_scale,
            "adapter_init": self.adapter_init,
        }


def _number(value: Any, where: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """``value`` as a finite float, or a :class:`RecipeError` naming ``where``; text that spells a number (a quoted
    ``"2"``) is taken as that number."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise RecipeError(f"{where}: must be a finite number, got {value}")
    if positive and value <= 0:
        raise RecipeError(f"{where}: must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise RecipeError(f"{where}: must be >= {minimum}, got {value}")
    return float(value)


def _loss(item: Any, i: int, src: str, used: set[str]) -> LossSpec:
    where = f"{src}: losses[{i}]"
    if not isinstance(item, dict):
        raise RecipeError(f"{where}: expected a mapping like {{type: cwd, weight: 1.0}}, got {item!r}")
    item = dict(item)
    kind = item.pop("type", None)
    types = loss_types()
    if kind is None:
        raise RecipeError(f"{where}: no type: give one of {', '.join(types)}, e.g. {{type: cwd, weight: 1.0}}")
    if not isinstance(kind, str) or kind not in types:
        raise RecipeError(f"{where}.type: {kind!r} is not a loss; choose one of {', '.join(types)}")
    weight = _number(item.pop("weight", 1.0), f"{where}.weight", minimum=0)
    name = item.pop("name", kind)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise RecipeError(f"{where}.name: expected letters, digits or '_' (the loss's column in logs, kd_<name>, "
                          f"e.g. 'at4'), got {name!r}")
    if name in used:
        raise RecipeError(f"{where}.name: {name!r} is used twice; give each loss a distinct name")
    used.add(name)
    spec = types[kind]
    defaults = spec.defaults
    params = dict(defaults)
    for key, value in item.items():
        if key not in defaults:
            valid = ", ".join(["type", "weight", "name", *defaults]) or "type, weight, name"
            raise RecipeError(f"{where}.{key}: unknown field for a {kind!r} loss; valid fields: {valid}")
        if isinstance(defaults[key], bool):
            if not isinstance(value, bool):
                raise RecipeError(f"{where}.{key}: expected true or false, got {value!r}")
            params[key] = value
        else:
            params[key] = _number(value, f"{where}.{key}", positive=key in spec.positive, minimum=0)
    problem = spec.check(params) if spec.check else None
    if problem:
        raise RecipeError(f"{where}.{problem}")
    return LossSpec(kind, weight, name, params)


def parse_recipe(data: Any, source: str = "<dict>") -> Recipe:
    """Validate a recipe mapping (as read from YAML) into a :class:`Recipe`."""
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping with a `losses:` list, got {type(data).__name__}")
    known = {"losses", "schedule", "region", "teacher_scale", "adapter_init", "name", "description"}
    if "names" in data and ({"train", "val", "path"} & data.keys()):
        raise RecipeError(f"{source} is a dataset YAML (names:, train:/val:), not a KD recipe: pass it to --data, and "
                          "as --recipe a built-in name (`detdistill recipes`) or a YAML with a losses: list")
    for key in data:
        if key not in known:
            raise RecipeError(f"{source}: unknown field {key!r}; valid fields: {', '.join(sorted(known))}")
    items = data.get("losses")
    if not isinstance(items, list) or not items:
        raise RecipeError(f"{source}: losses: expected a non-empty list of losses")
    used: set[str] = set()
    losses = tuple(_loss(item, i, source, used) for i, item in enumerate(items))
    if all(spec.weight == 0 for spec in losses):
        raise RecipeError(f"{source}: losses: every loss has weight 0, so nothing would be distilled: give one a "
                          "weight above 0 (or train without a teacher)")

    sched = {} if data.get("schedule") is None else data["schedule"]
    if not isinstance(sched, dict):
        raise RecipeError(f"{source}: schedule: expected a mapping like {{kind: cosine, final: 0.1}}")
    unknown = set(sched) - {"kind", "final", "stop_last"}
    if unknown:
        raise RecipeError(f"{source}: schedule.{sorted(unknown)[0]}: unknown field; valid fields: kind, final, stop_last")
    kind = sched.get("kind", "constant")
    if kind not in KINDS:
        raise RecipeError(f"{source}: schedule.kind: {kind!r} is not one of {', '.join(KINDS)}")
    final = _number(sched.get("final", 1.0), f"{source}: schedule.final", minimum=0)
    if kind == "constant" and final != 1.0:
        raise RecipeError(f"{source}: schedule.final: a constant schedule keeps the factor at 1, so final={final:g} "
                          "would do nothing: set kind: cosine (or linear) to decay to it, or drop final")
    stop_last = sched.get("stop_last", 0)
    if stop_last != "close_mosaic":
        where = f"{source}: schedule.stop_last (an epoch count or 'close_mosaic')"
        epochs = _number(stop_last, where, minimum=0)
        if not epochs.is_integer():
            raise RecipeError(f"{where}: must be a whole number of epochs, got {stop_last}")
        stop_last = int(epochs)

    region = data.get("region", "teacher")
    if region not in REGIONS:
        raise RecipeError(f"{source}: region: {region!r} is not one of {', '.join(REGIONS)}")
    scale = _number(data.get("teacher_scale", 1.0), f"{source}: teacher_scale", positive=True)
    if scale > MAX_TEACHER_SCALE:
        raise RecipeError(f"{source}: teacher_scale: at most {MAX_TEACHER_SCALE:g} (the teacher's input relative to "
                          f"the student's; its forward pass costs teacher_scale^2 times more), got {scale:g}")
    if scale not in ALIGNED_SCALES and any(s.family == "box" for s in losses):
        raise RecipeError(
            f"{source}: teacher_scale: box losses need the teacher's anchors to line up with the student's: "
            f"use teacher_scale {', '.join(f'{a:g}' for a in ALIGNED_SCALES)} or drop the box loss"
        )
    adapter_init = data.get("adapter_init", "fit")
    if adapter_init not in ADAPTER_INITS:
        raise RecipeError(f"{source}: adapter_init: {adapter_init!r} is not one of {', '.join(ADAPTER_INITS)}")
    return Recipe(losses, Schedule(kind, final, stop_last), region, scale, adapter_init, source)


def load_recipe(recipe: str | Path | dict | Recipe | None = None) -> Recipe:
    """Load a recipe from a YAML path, a built-in name (``default``, ``cwd``...), a mapping, or pass one through."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(recipe)
    if recipe is not None and not isinstance(recipe, (str, Path)):
        raise RecipeError(f"a recipe is a built-in name ({', '.join(builtin_recipes())}), a YAML path, a mapping "
                          f"with a losses: list, or a Recipe; got {type(recipe).__name__} {recipe!r}")
    recipe = resolve_recipe_name(str(recipe) if recipe else None)
    path = Path(recipe)
    if not path.suffix and not path.exists():
        path = RECIPES_DIR / f"{recipe}.yaml"
    if path.is_dir():
        raise RecipeError(f"recipe {recipe!r} is a folder: give a recipe YAML file or a built-in name")
    if not path.is_file():
        raise RecipeError(
            f"recipe {recipe!r} not found: give a YAML file path or a built-in name ({', '.join(builtin_recipes())})"
        )
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (not UTF-8): give a recipe YAML") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {yaml_problem(e)}") from e
    return parse_recipe(data, str(path))
