"""What a pruning run wrote and measured: the before/after table, the summary and the checkpoint's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PruneConfig


@dataclass
class LayerWidth:
    """Output channels of one pruned convolution before and after."""

    name: str
    before: int
    after: int


@dataclass
class PruneResult:
    """What :func:`~detdistill.prune.checkpoint.prune_checkpoint` wrote and measured (GFLOPs at ``config.imgsz``,
    like ultralytics' model info)."""

    path: Path
    source: Path
    config: PruneConfig
    params_before: int
    params_after: int
    gflops_before: float
    gflops_after: float
    size_before: int = 0  # file bytes
    size_after: int = 0
    layers: list[LayerWidth] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    untrained_source: bool = False  # the source never trained (detdistill.models.never_trained): nothing learned

    @property
    def ratio(self) -> float:
        """The achieved fraction of the teacher's ``config.metric`` that the pruned model keeps."""
        if self.config.metric == "params":
            return self.params_after / self.params_before
        return self.gflops_after / self.gflops_before

    def table(self) -> list[tuple[str, str, str, str]]:
        """Rows (quantity, before, after, kept) of the before/after table."""
        rows = [
            ("parameters", f"{self.params_before / 1e6:.3f} M", f"{self.params_after / 1e6:.3f} M",
             f"{self.params_after / self.params_before:.1%}"),
            (f"GFLOPs @{self.config.imgsz}", _gflops(self.gflops_before), _gflops(self.gflops_after),
             f"{self.gflops_after / self.gflops_before:.1%}"),
        ]
        if self.size_before and self.size_after:  # MB as the pipeline's report counts them (10^6 bytes)
            rows.append(("file size", f"{self.size_before / 1e6:.2f} MB", f"{self.size_after / 1e6:.2f} MB",
                         f"{self.size_after / self.size_before:.1%}"))
        return rows

    def summary(self) -> str:
        """A headline (what was pruned, how, the ratio reached) and the before/after table."""
        c = self.config
        head = (f"pruned {self.source.name} -> {self.path} ({c.importance} importance, "
                f"{'global' if c.global_pruning else 'uniform'} ratio, target {c.target:g} of {c.metric}, "
                f"achieved {self.ratio:.3f})")
        lines = [head, f"{'':14s}{'before':>14s}{'after':>14s}{'kept':>9s}"]
        lines += [f"{q:14s}{b:>14s}{a:>14s}{k:>9s}" for q, b, a, k in self.table()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The ``detdistill_prune`` record stored in the checkpoint (plain types only)."""
        c = self.config
        return {
            "source": str(self.source),
            "target": c.target,
            "metric": c.metric,
            "importance": c.importance,
            "global_pruning": c.global_pruning,
            "imgsz": c.imgsz,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "gflops_before": self.gflops_before,
            "gflops_after": self.gflops_after,
            "ratio": self.ratio,
            "ignored": list(self.ignored),
            "layers": {w.name: [w.before, w.after] for w in self.layers},
        }


def _gflops(value: float) -> str:
    """Two decimals, or two significant digits below 0.1 (a tiny model at a small size is not 0.00 GFLOPs)."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"
