"""Accuracy under image corruptions: mAP50-95 per corruption (the mean over severities 1-5 unless one is named),
their mean mPC and the relative rPC = mPC / clean mAP, as in "Benchmarking Robustness in Object Detection:
Autonomous Driving when Winter is Coming" (Michaelis et al., 2019; the COCO-C protocol after ImageNet-C,
Hendrycks and Dietterich, ICLR 2019). Torch-free."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..data.corruptions import SEVERITIES


@dataclass
class Robustness:
    """Scores of one model on the same images, clean and under each corruption."""

    clean: float
    per_corruption: dict[str, float] = field(default_factory=dict)  # label -> mAP50-95 (mean over severities)
    per_severity: dict[str, list[float]] = field(default_factory=dict)  # label -> mAP50-95 at each severity scored

    @property
    def mpc(self) -> float:
        """Mean performance under corruption: each corruption's mean over the severities scored, then the mean over
        corruptions (a corruption given at two severities counts once, as the mean of both)."""
        by_name: dict[str, list[float]] = {}
        for key, maps in self.per_severity.items():
            by_name.setdefault(key.split(":")[0], []).extend(maps)
        if not by_name:
            return float("nan")
        return sum(sum(maps) / len(maps) for maps in by_name.values()) / len(by_name)

    @property
    def rpc(self) -> float:
        """mPC relative to the clean mAP (1.0: nothing lost)."""
        return self.mpc / self.clean if self.clean > 0 else float("nan")

    def as_dict(self) -> dict:
        return {"clean": self.clean, "per_corruption": self.per_corruption, "per_severity": self.per_severity}

    @classmethod
    def from_dict(cls, d: dict) -> "Robustness":
        return cls(d["clean"], dict(d["per_corruption"]), {k: list(v) for k, v in d["per_severity"].items()})


def label(name: str, severity: int | None) -> str:
    return f"{name}:{severity}" if severity else name


def robustness(score: Callable[[tuple[str, int] | None], float], specs: Sequence[tuple[str, int | None]],
               clean: float | None = None, progress: Callable[[str], None] | None = None) -> Robustness:
    """Score ``score(None)`` (clean, unless given) and ``score((name, severity))`` for every spec of
    :func:`detdistill.data.corruptions.parse_spec` (severity None: each of 1-5, then their mean)."""
    result = Robustness(score(None) if clean is None else clean)
    for name, severity in specs:
        maps = []
        for s in [severity] if severity else SEVERITIES:
            maps.append(score((name, s)))
            if progress:
                progress(f"{name}:{s} mAP50-95 {maps[-1]:.4f}")
        result.per_severity[label(name, severity)] = maps
        result.per_corruption[label(name, severity)] = sum(maps) / len(maps)
    return result
