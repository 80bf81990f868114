"""Channel importance for pruning: weight-norm criteria from torch-pruning and the BatchNorm-aware ``var``."""

from __future__ import annotations

import types
from typing import Any

from .config import IMPORTANCES
from .models import PruneError, reset_head


def make_importance(name: str) -> Any:
    """torch-pruning's importance for ``name`` (l1/l2 group norms, lamp, bn = BatchNorm scale, fpgm); ``None`` for
    ``var``, which :class:`OutputVarianceImportance` computes from the model's :class:`BatchNormMoments`."""
    import torch_pruning as tp  # lazy: torch_pruning (the CLI loads prune's verbs without it)

    factories = {
        "var": lambda: None,
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "lamp": lambda: tp.importance.LAMPImportance(p=2),
        "bn": tp.importance.BNScaleImportance,
        "fpgm": lambda: tp.importance.FPGMImportance(p=2),
    }
    if name.lower() not in factories:
        raise PruneError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCES)}")
    return factories[name.lower()]()


class BatchNormMoments:
    """Per-channel mean and variance of every convolution's input, from the BatchNorm statistics alone.

    One forward pass replaces every Conv block's output (conv -> BN -> act) by samples of ``act(beta + gamma *
    z)``, ``z ~ N(0, 1)``: what the block emits when its BatchNorm sees the statistics it was trained with. The
    samples flow through concat, upsample, pooling and residual adds, and a pre-hook on each ``nn.Conv2d``
    records the mean and variance of what reaches it. No images are needed.

    The moments serve two purposes:

    * importance (``var``): removing input channel ``c`` of a consumer changes its normalized output ``o`` by
      ``W[o, c] * (x_c - E x_c) / sigma_o``; the expected squared damage, summed over consumers, ranks channels;
    * compensation: the mean part ``sum_hw(W[:, c]) * E[x_c]`` is folded into the consumer's BatchNorm running
      mean (or its bias, for the head's last convs), so in eval mode the next layers see the same activation
      means. In training BatchNorm uses batch statistics, so this only matters for the model as saved.
    """

    def __init__(self, model, size: int, samples: int = 2, seed: int = 0):
        self.model, self.size, self.samples, self.seed = model, size, samples, seed
        self.mu: dict = {}
        self.var: dict = {}
        self.bn_of: dict = {}
        self._sens: dict = {}
        self.probe()

    def probe(self) -> None:
        """Measure the moments of the current model (one forward pass; Conv blocks are not computed)."""
        import torch  # lazy: torch (the CLI loads prune's verbs without it)
        from torch import nn

        gen = torch.Generator().manual_seed(self.seed)
        self.mu.clear()
        self.var.clear()
        self.bn_of.clear()
        self._sens.clear()

        def record(conv, x):
            x = x.detach()
            self.mu[conv] = x.mean((0, 2, 3)).clone()
            self.var[conv] = x.var((0, 2, 3)).clone()

        def sampled_forward(block, x):  # replaces Conv.forward: what BN + act emit on trained statistics
            record(block.conv, x)
            c = block.conv
            h, w = (
                (n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(x.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride)
            )
            z = torch.randn((x.shape[0], c.out_channels, h, w), generator=gen)
            bn = block.bn
            return block.act(bn.bias.detach().view(1, -1, 1, 1) + bn.weight.detach().view(1, -1, 1, 1) * z)

        patched, hooks = [], []
        for m in self.model.modules():
            if isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d):
                self.bn_of[m.conv] = m.bn
                if isinstance(getattr(m, "act", None), nn.Module) and isinstance(m.conv.padding, tuple):
                    m.forward = types.MethodType(sampled_forward, m)
                    patched.append(m)
        for m in self.model.modules():
            if isinstance(m, nn.Conv2d) and not any(m is b.conv for b in patched):
                hooks.append(m.register_forward_pre_hook(lambda mod, inputs: record(mod, inputs[0])))
        was = self.model.training
        try:
            with torch.no_grad():
                self.model.eval()(torch.rand((self.samples, 3, self.size, self.size), generator=gen))
        finally:
            for h in hooks:
                h.remove()
            for m in patched:
                m.__dict__.pop("forward", None)
            self.model.train(was)
            reset_head(self.model)

    def sensitivity(self, conv):
        """Per input channel: sum over outputs of ``||W[o, c]||^2 * gamma_o^2 / var_o`` (damage in BN-output units)."""
        bn = self.bn_of.get(conv)
        key = (id(conv.weight), conv.weight._version) + ((id(bn.running_var), bn.running_var._version,
                                                          id(bn.weight)) if bn is not None else ())
        hit = self._sens.get(conv)
        if hit is not None and hit[0] == key:
            return hit[1]
        w2 = conv.weight.detach().float().pow(2).sum((2, 3))  # (out, in)
        if bn is not None:
            scale = bn.weight.detach().float().pow(2) / (bn.running_var.float() + bn.eps)
            w2 = w2 * scale[:, None]
        sens = w2.sum(0)
        self._sens[conv] = (key, sens)
        return sens

    def before_prune(self, dg, group) -> None:
        """Fold the mean of every input channel ``group`` removes into its consumer; keep the moments in step."""
        import torch  # lazy: torch (the CLI loads prune's verbs without it)

        removed: dict = {}  # a conv can appear more than once in a group (e.g. a concat's two inputs)
        for dep, idxs in group:
            conv = dep.target.module
            if conv not in self.mu or not idxs:
                continue
            depthwise = conv.groups > 1 and conv.groups == conv.in_channels
            if dg.is_in_channel_pruning_fn(dep.handler) or depthwise:
                removed.setdefault(conv, set()).update(int(i) for i in idxs)
        with torch.no_grad():
            for conv, idxs in removed.items():
                mu = self.mu[conv]
                drop = torch.as_tensor(sorted(idxs), dtype=torch.long)
                keep = torch.ones(len(mu), dtype=torch.bool)
                keep[drop] = False
                if conv.groups == 1:
                    w = conv.weight.detach().float()
                    delta = (w[:, drop].sum((2, 3)) * mu[drop][None, :]).sum(1)
                    bn = self.bn_of.get(conv)
                    if bn is not None:
                        bn.running_mean -= delta
                        share = w.pow(2).sum((2, 3)) * self.var[conv][None, :]  # (out, in) variance shares
                        kept = 1 - share[:, drop].sum(1) / share.sum(1).clamp_min(1e-12)
                        bn.running_var *= kept.clamp(0.05, 1.0)
                    elif conv.bias is not None:
                        conv.bias.data += delta
                self.mu[conv] = mu[keep]
                self.var[conv] = self.var[conv][keep]


class OutputVarianceImportance:
    """Channel importance = expected squared change of the consumers' normalized outputs when the channel is
    removed (its mean being compensated): ``sum_consumers Var[x_c] * sum_o ||W[o, c]||^2 * gamma_o^2 / var_o``.

    BatchNorm-aware and data-free (see :class:`BatchNormMoments`); unlike weight norms it accounts for the producer's
    BatchNorm scale and shift, the activation, and how strongly the consumers amplify the channel.
    """

    def __init__(self, moments: BatchNormMoments, flops=None):
        self.moments = moments
        self.flops = flops  # a FlopCounter: divide by the FLOPs one channel of the group costs (global ranking)

    def _cost(self, group) -> float:
        dg, hw, cost = group._DG, self.flops.hw, 0.0
        for item in group:
            conv = item.dep.target.module
            if conv not in hw:
                continue
            k = conv.weight[0, 0].numel()
            if dg.is_out_channel_pruning_fn(item.dep.handler):
                cost += k * conv.weight.shape[1] * hw[conv]
            elif conv.groups == 1:
                cost += k * conv.weight.shape[0] * hw[conv]
        return max(cost, 1.0)

    def __call__(self, group):
        imp = self._damage(group)
        if imp is not None and self.flops is not None:
            imp = imp / self._cost(group)
        return imp

    def _damage(self, group):
        import torch  # lazy: torch (the CLI loads prune's verbs without it)

        dg = group._DG
        n = len(group[0].idxs)
        imp = torch.zeros(n)
        used = False
        for item in group:
            dep, idxs = item.dep, item.idxs
            conv = dep.target.module
            if conv not in self.moments.var or conv.groups != 1 or not dg.is_in_channel_pruning_fn(dep.handler):
                continue
            local = self.moments.var[conv][idxs] * self.moments.sensitivity(conv)[idxs]
            imp.scatter_add_(0, torch.as_tensor(item.root_idxs, dtype=torch.long), local.float())
            used = True
        return imp if used else None


class FlopCounter:
    """Fast conv FLOPs (2 x MACs of every Conv2d/Linear at one input size) for steering the pruning loop;
    widths change in place, spatial sizes do not, so one traced forward is enough."""

    def __init__(self, model, imgsz: int):
        import torch  # lazy: torch (the CLI loads prune's verbs without it)
        from torch import nn

        self.hw: dict = {}
        hooks = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        was = model.training
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(1, 3, imgsz, imgsz))
        finally:
            for h in hooks:
                h.remove()
            model.train(was)
            reset_head(model)

    def _hook(self, module, inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        self.hw[module] = int(out[0, 0].numel()) if out.ndim >= 3 else 1

    def __call__(self) -> float:
        return sum(2.0 * m.weight.numel() * hw for m, hw in self.hw.items()) / 1e9

