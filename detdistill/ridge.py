"""Closed-form ridge regression on accumulated statistics, shared by pruning's layer refit
(:mod:`detdistill.prune.reconstruct`) and the distiller's adapter fit (:func:`detdistill.distill.adapters.fit_adapter`).

Rows of inputs ``X`` (n, inputs) and targets ``Y`` (n, outputs) are added in chunks; :meth:`RidgeFit.solve` gives
the centred least-squares map with a ridge pull towards given weights:

    W, b = argmin_W,b  || X W + b - Y ||^2 / n + lambda || W - W_0 ||^2,   lambda = ridge * mean(diag(cov(X)))
"""

from __future__ import annotations

import torch


class RidgeFit:
    """Accumulated least-squares statistics (in float64) of inputs ``X`` against targets ``Y``."""

    def __init__(self, n_in: int, n_out: int):
        d = torch.float64
        self.xtx, self.xty = torch.zeros(n_in, n_in, dtype=d), torch.zeros(n_in, n_out, dtype=d)
        self.sx, self.sy, self.syy = (torch.zeros(n, dtype=d) for n in (n_in, n_out, n_out))
        self.n = 0

    def add(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        """Add rows: ``xs`` (n, inputs) and ``ys`` (n, outputs)."""
        xs, ys = xs.double(), ys.double()
        self.xtx += xs.T @ xs
        self.xty += xs.T @ ys
        self.sx += xs.sum(0)
        self.sy += ys.sum(0)
        self.syy += ys.pow(2).sum(0)
        self.n += xs.shape[0]

    def solve(self, w0: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """``(W, bias, error before, error after)`` of the ridge fit pulled towards ``w0`` (inputs x outputs)."""
        n = self.n
        mx, my = self.sx / n, self.sy / n
        cxx = self.xtx / n - torch.outer(mx, mx)
        cxy = self.xty / n - torch.outer(mx, my)
        var_y = (self.syy / n - my.pow(2)).clamp_min(1e-12)

        def rel_error(w):  # residual energy of the centred fit over the target's variance, mean over outputs
            res = var_y - 2 * (w * cxy).sum(0) + (w * (cxx @ w)).sum(0)
            return float((res.clamp_min(0) / var_y).mean())

        lam = ridge * float(cxx.diagonal().mean().clamp_min(1e-12))
        w = torch.linalg.solve(cxx + lam * torch.eye(len(mx), dtype=torch.float64), cxy + lam * w0)
        return w, my - mx @ w, rel_error(w0), rel_error(w)
