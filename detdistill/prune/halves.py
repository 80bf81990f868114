"""C2f-style blocks held as two half convolutions while torch-pruning traces them, then restored."""

from __future__ import annotations

import copy
import types


def split_blocks(model) -> list:
    """C2f-style blocks whose ``cv1`` output is cut in two equal halves (C2f and C3k2 without attention)."""
    from ultralytics.nn.modules import C2f, C3k2  # lazy: ultralytics (the CLI loads prune's verbs without it)

    return [m for m in model.modules() if type(m) in (C2f, C3k2) and not has_attention(m)]


def has_attention(module) -> bool:
    """Whether ``module`` holds an attention block (Attention, PSA, PSABlock): torch-pruning cannot follow its heads."""
    return any("Attention" in type(s).__name__ or "PSA" in type(s).__name__ for s in module.modules())


class SplitHalves:
    """Trace C2f-style blocks without their ``chunk``: ``cv1`` becomes two convs (its output halves) while pruning.

    torch-pruning cannot map a split whose piece feeds several layers (C2f's second half feeds the first
    bottleneck and the concat), so during pruning each block runs ``cv2(cat([a(x), b(x), m...]))`` with ``a`` and
    ``b`` holding the two halves of ``cv1``. :meth:`restore` merges them back into the block's own ``cv1`` (same
    Conv object, ultralytics' ``forward``), so the saved model has the original classes.
    """

    def __init__(self, blocks: list):
        self.blocks = blocks
        self.pairs: dict = {}  # block -> (a, b, original cv1, original _modules order)

    def apply(self, kept=None) -> None:
        """Split every block's ``cv1`` (``kept``: a :class:`KeptChannels` to keep in step)."""
        for blk in self.blocks:
            cv1, c = blk.cv1, blk.cv1.conv.out_channels // 2
            a, b = self._half(cv1, slice(0, c)), self._half(cv1, slice(c, 2 * c))
            order = list(blk._modules)
            del blk._modules["cv1"]
            blk._modules["tp_half_a"], blk._modules["tp_half_b"] = a, b
            self.pairs[blk] = (a, b, cv1, order)
            blk.forward = types.MethodType(forward_halves, blk)
            if kept is not None:
                kept.split(cv1.conv, [a.conv, b.conv])

    @staticmethod
    def _half(conv_block, sl: slice):
        from torch import nn  # lazy: torch (the CLI loads prune's verbs without it)

        h = copy.deepcopy(conv_block)
        h.conv.weight = nn.Parameter(conv_block.conv.weight.data[sl].clone())
        h.conv.out_channels = h.conv.weight.shape[0]
        bn, src = h.bn, conv_block.bn
        bn.weight = nn.Parameter(src.weight.data[sl].clone())
        bn.bias = nn.Parameter(src.bias.data[sl].clone())
        bn.running_mean, bn.running_var = src.running_mean[sl].clone(), src.running_var[sl].clone()
        bn.num_features = bn.weight.shape[0]
        return h

    def roots(self) -> list[tuple]:
        """The (a.conv, b.conv) pairs whose widths must stay equal."""
        return [(a.conv, b.conv) for a, b, _, _ in self.pairs.values()]

    def restore(self, kept=None) -> None:
        """Merge every block's (pruned) halves back into its own ``cv1`` and ``forward`` (``kept`` kept in step)."""
        import torch  # lazy: torch (the CLI loads prune's verbs without it)
        from torch import nn

        for blk, (a, b, cv1, order) in self.pairs.items():
            blk.__dict__.pop("forward", None)
            cv1.conv.weight = nn.Parameter(torch.cat([a.conv.weight.data, b.conv.weight.data]))
            cv1.conv.in_channels = cv1.conv.weight.shape[1]
            cv1.conv.out_channels = cv1.conv.weight.shape[0]
            for name in ("weight", "bias"):
                setattr(cv1.bn, name, nn.Parameter(torch.cat([getattr(a.bn, name).data, getattr(b.bn, name).data])))
            cv1.bn.running_mean = torch.cat([a.bn.running_mean, b.bn.running_mean])
            cv1.bn.running_var = torch.cat([a.bn.running_var, b.bn.running_var])
            cv1.bn.num_features = cv1.bn.weight.shape[0]
            del blk._modules["tp_half_a"], blk._modules["tp_half_b"]
            blk._modules["cv1"] = cv1
            for name in order:  # the original module order (state_dict keys, printing)
                blk._modules[name] = blk._modules.pop(name)
            blk.c = a.conv.out_channels
            if kept is not None:
                kept.merge(cv1.conv, [a.conv, b.conv])
            if a.conv.out_channels != b.conv.out_channels:
                raise RuntimeError(f"internal error: unequal halves {a.conv.out_channels}/{b.conv.out_channels}")
        self.pairs.clear()


def forward_halves(self, x):
    """C2f.forward with ``cv1`` held as two half convs (used only while pruning)."""
    import torch  # lazy: torch (the CLI loads prune's verbs without it)

    y = [self.tp_half_a(x), self.tp_half_b(x)]
    y.extend(m(y[-1]) for m in self.m)
    return self.cv2(torch.cat(y, 1))

