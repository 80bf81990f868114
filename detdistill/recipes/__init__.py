"""The built-in distillation recipes: one YAML file each in this folder, their names, and which one is the default.

Torch-free, so ``detdistill recipes`` lists and prints them on any install.
"""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent
# the built-in that ``default`` (and no recipe at all) names; chosen on the tuning halves of the benchmark
# tracks (docs/benchmarks.md, "Choosing the default recipe")
DEFAULT_RECIPE = "at"


def builtin_recipes() -> list[str]:
    """The built-in recipe names, ``default`` included."""
    return sorted([p.stem for p in RECIPES_DIR.glob("*.yaml")] + ["default"])


def resolve_recipe_name(recipe: str | None) -> str | None:
    """``default`` (or nothing) -> the built-in it stands for; any other name or path unchanged."""
    return DEFAULT_RECIPE if recipe in (None, "", "default") else recipe


def recipe_summary(name: str) -> str:
    """One line on what a built-in recipe does: its YAML's comment lines, joined."""
    if resolve_recipe_name(name) != name:
        return f"the same as {DEFAULT_RECIPE} (the recipe used when none is named)"
    lines = (RECIPES_DIR / f"{name}.yaml").read_text().splitlines()
    return " ".join(line.lstrip("# ") for line in lines if line.startswith("#"))
