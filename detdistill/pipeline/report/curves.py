"""Training curves: an ultralytics ``results.csv`` read into columns, and which columns are losses and mAP."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TASK_LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
KD_PREFIXES = ("train/kd_", "train/dis_")  # ours, and ultralytics' own distillation loss
MAP5095_PREFIX = "metrics/mAP50-95("
MAP50_PREFIX = "metrics/mAP50("


@dataclass
class Curves:
    """A results.csv as columns of floats (header names stripped), or why it could not be read."""

    name: str
    columns: dict[str, list[float]]
    problem: str = ""

    @property
    def epochs(self) -> list[float]:
        """The epoch column, or 1..n where the csv has none."""
        n = max((len(v) for v in self.columns.values()), default=0)
        return self.columns.get("epoch") or [float(i + 1) for i in range(n)]



def _to_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return math.nan


def _last_row_per_epoch(keys: list[str], rows: list[list[str]]) -> list[list[str]]:
    """Each epoch once, from its last row: a resumed training redoes the epoch it was killed in and appends
    a second row for it. Epochs keep the order they first appear in; rows without a readable epoch are kept."""
    if "epoch" not in keys:
        return rows
    col = keys.index("epoch")
    last: dict[Any, list[str]] = {}
    for i, row in enumerate(rows):
        epoch = _to_float(row[col]) if col < len(row) else math.nan
        last[("row", i) if math.isnan(epoch) else epoch] = row
    return list(last.values())


def read_results_csv(name: str, path: Path) -> Curves:
    """Read an ultralytics results.csv; header names are stripped (older versions pad them)."""
    path = Path(path)
    if not path.is_file():
        return Curves(name, {}, f"{path} not found")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            lines = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return Curves(name, {}, f"{path} unreadable ({err})")
    if len(lines) < 2:
        return Curves(name, {}, f"{path} has no epochs")
    keys = [h.strip() for h in lines[0]]
    cols: dict[str, list[float]] = {k: [] for k in keys if k}
    for row in _last_row_per_epoch(keys, lines[1:]):
        row = row + [""] * (len(keys) - len(row))  # a row cut short (training killed) pads with NaN
        for key, cell in zip(keys, row):
            if key:
                cols[key].append(_to_float(cell))
    return Curves(name, cols)


def map_column(curves: Curves, prefix: str) -> str | None:
    """The first column whose name starts with ``prefix`` (box metrics come first)."""
    return next((k for k in curves.columns if k.startswith(prefix)), None)


def kd_columns(curves: Curves) -> list[str]:
    """The distillation loss columns in the training set (``train/kd_*``, ``train/dis_*``)."""
    return [k for k in curves.columns if k.startswith(KD_PREFIXES)]


def last_kd_epoch(curves: Curves) -> int | None:
    """Index of the last epoch in which a KD loss was on (non-zero): a schedule may turn KD off for the final epochs
    (``stop_last: close_mosaic``), whose KD losses then read 0. None: KD was off (or not logged) throughout."""
    columns = [curves.columns[k] for k in kd_columns(curves)]
    on = [i for i in range(max((len(c) for c in columns), default=0))
          if any(i < len(c) and not math.isnan(c[i]) and c[i] != 0 for c in columns)]
    return on[-1] if on else None


def loss_columns(curves: Curves) -> list[str]:
    """Task losses first, then the distillation losses, then any other ``train/`` column."""
    train = [k for k in curves.columns if k.startswith("train/")]
    kd = kd_columns(curves)
    task = [k for k in TASK_LOSSES if k in train]
    return task + kd + [k for k in train if k not in task and k not in kd]



def training_notes(curves: list[Curves]) -> list[str]:
    """A "no training curves" note for every run whose csv was missing or empty."""
    return [f"no training curves for {c.name}: {c.problem}" for c in curves if c.problem]
