"""Layer-wise least-squares reconstruction of a pruned detector from a few images.

After channels are removed, every convolution downstream sees fewer (and, deeper in the network, different)
inputs. Following He et al., "Channel Pruning for Accelerating Very Deep Neural Networks" (ICCV 2017) and
Luo et al., "ThiNet" (ICCV 2017), each convolution of the pruned model is refitted, in execution order, so that
on calibration images its output matches the unpruned model's output on the channels it kept:

    W', b' = argmin_W,b  || X_p W + b - Z_o ||^2 + lambda || W - W_0 ||^2

``X_p`` are the pruned model's input patches at that layer (so the error of earlier layers is corrected, not
accumulated), ``Z_o`` the original convolution's outputs (before BatchNorm), ``W_0`` the pruned weights (the
original's kept slice) the ridge term shrinks towards. The bias goes into the BatchNorm's running mean (or the
convolution's bias for the head's last layers). Each fit is a closed-form solve on accumulated ``X^T X``, so a
few dozen images and a couple of minutes on a CPU suffice, and the model starts fine-tuning close to the
teacher's function instead of near mAP 0.

:class:`KeptChannels` records, while torch-pruning removes channels, which of the original channels every
convolution still has; :func:`reconstruct` needs that map.
"""

from __future__ import annotations

from collections.abc import Callable


class KeptChannels:
    """Original indices of the output and input channels each ``nn.Conv2d`` still has, kept in step with pruning.

    Pass it to the pruning loop as an observer: :meth:`before_prune` sees every torch-pruning group just
    before it is applied. Keys are module objects while pruning; :meth:`by_name` gives the final map by name.
    """

    def __init__(self, model):
        from torch import nn  # lazy: torch (the CLI loads prune's verbs without it)

        self.out: dict = {}
        self.inp: dict = {}
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                self.out[m] = list(range(m.out_channels))
                self.inp[m] = list(range(m.in_channels))

    def split(self, whole, parts: list) -> None:
        """``parts`` (convs) stand in for consecutive slices of ``whole``'s output channels while pruning."""
        start = 0
        for p in parts:
            self.out[p] = self.out[whole][start:start + p.out_channels]
            self.inp[p] = list(self.inp[whole])
            start += p.out_channels

    def merge(self, whole, parts: list) -> None:
        """Undo :meth:`split`: ``whole`` now holds the parts' (pruned) outputs, concatenated."""
        self.out[whole] = [c for p in parts for c in self.out.pop(p)]
        ins = [self.inp.pop(p) for p in parts]
        if any(i != ins[0] for i in ins):
            raise RuntimeError("internal error: the halves of a split convolution lost different input channels")
        self.inp[whole] = ins[0]

    def before_prune(self, dg, group) -> None:
        """Drop the indices ``group`` is about to remove (in the order torch-pruning applies them)."""
        for dep, idxs in group:
            conv = dep.target.module
            if conv not in self.out or not idxs:
                continue
            drop = {int(i) for i in idxs}
            depthwise = conv.groups > 1 and conv.groups == conv.in_channels
            if dg.is_out_channel_pruning_fn(dep.handler) or depthwise:
                self.out[conv] = [c for i, c in enumerate(self.out[conv]) if i not in drop]
            if dg.is_in_channel_pruning_fn(dep.handler) or depthwise:
                self.inp[conv] = [c for i, c in enumerate(self.inp[conv]) if i not in drop]

    def by_name(self, model) -> dict[str, tuple[list[int], list[int]]]:
        """``{module name: (kept output channels, kept input channels)}``; checked against the modules' widths."""
        from torch import nn  # lazy: torch (the CLI loads prune's verbs without it)

        kept = {}
        for name, m in model.named_modules():
            if not isinstance(m, nn.Conv2d):
                continue
            out, inp = self.out[m], self.inp[m]
            if len(out) != m.out_channels or len(inp) != m.in_channels:
                raise RuntimeError(f"internal error: channel record of {name} ({len(out)} out, {len(inp)} in) does "
                                   f"not match its width ({m.out_channels} out, {m.in_channels} in)")
            kept[name] = (out, inp)
        return kept


MIN_SAMPLES_PER_WEIGHT = 4  # a layer is refitted only from at least this many samples per input weight


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the tensor it waits for is seen."""


def _capture(model, module, x, want: str):
    """Run ``model`` on ``x`` until ``module`` runs; return its input (``want='in'``) or output (``'out'``)."""
    import torch  # lazy: torch (the CLI loads prune's verbs without it)

    box = {}

    def pre(mod, inputs):
        if want == "in":
            box["t"] = inputs[0]
            raise _Stop

    def post(mod, inputs, output):
        box["t"] = output
        raise _Stop

    handle = module.register_forward_pre_hook(pre) if want == "in" else module.register_forward_hook(post)
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "t" not in box:
        raise RuntimeError("internal error: the layer to reconstruct did not run")
    return box["t"]


def execution_order(model, imgsz: int = 64) -> list[str]:
    """Names of the ``nn.Conv2d`` modules in the order a forward pass first runs them."""
    import torch  # lazy: torch (the CLI loads prune's verbs without it)
    from torch import nn

    order, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, inp, n=name: order.append(n) if n not in order else None))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, imgsz, imgsz))
    finally:
        for h in hooks:
            h.remove()
    return order


def _bn_of(model) -> dict:
    """``conv -> BatchNorm`` for ultralytics' Conv blocks (conv, bn, act)."""
    from torch import nn  # lazy: torch (the CLI loads prune's verbs without it)

    return {m.conv: m.bn for m in model.modules()
            if isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d)}


def _layer_input(layer, prev, saved: dict, b: int):
    """What ultralytics feeds ``layer`` for batch ``b``: the previous output, or saved outputs named by ``layer.f``."""
    if layer.f == -1:
        return prev[b]
    if isinstance(layer.f, int):
        return saved[layer.f][b]
    return [prev[b] if j == -1 else saved[j][b] for j in layer.f]


def reconstruct(original, pruned, kept: dict[str, tuple[list[int], list[int]]], batches: list,
                ridge: float = 1e-3, log: Callable[[str], None] | None = None) -> dict[str, tuple[float, float]]:
    """Refit every convolution of ``pruned`` (in place) to reproduce ``original``'s outputs on ``batches``.

    Args:
        original: the unpruned ultralytics DetectionModel (float, unchanged).
        pruned: the pruned model with the same module names (float; modified in place).
        kept: ``{conv name: (kept output channels, kept input channels)}`` from :class:`KeptChannels`.
        batches: image tensors (N, 3, H, W), RGB in [0, 1], as the model's forward takes them.
        ridge: strength of the pull towards the pruned weights, relative to the mean input energy.

    Both models run one top-level layer at a time on cached inputs, so refitting a convolution re-runs only its
    own layer. Returns ``{conv name: (relative error before, after)}`` of the layers refitted (error = residual
    energy over the target's variance, on the calibration images). Grouped (depthwise) convolutions, the DFL
    and layers with fewer than ``MIN_SAMPLES_PER_WEIGHT`` samples (pixels x images) per input weight are left
    as they are.
    """
    import torch  # lazy: torch (the CLI loads prune's verbs without it)
    import torch.nn.functional as F

    from ..ridge import RidgeFit

    was = (original.training, pruned.training)
    original.eval()
    pruned.eval()
    o_mods, p_mods = dict(original.named_modules()), dict(pruned.named_modules())
    bn_p, bn_o = _bn_of(pruned), _bn_of(original)
    order = [n for n in execution_order(pruned) if ".dfl." not in f".{n}." and p_mods[n].groups == 1]
    save = set(getattr(pruned, "save", []))
    prev_p, prev_o = list(batches), list(batches)
    saved_p: dict[int, list] = {}
    saved_o: dict[int, list] = {}
    report: dict[str, tuple[float, float]] = {}
    step = 0
    try:
        for i, (layer_p, layer_o) in enumerate(zip(pruned.model, original.model)):
            ins_p = [_layer_input(layer_p, prev_p, saved_p, b) for b in range(len(batches))]
            ins_o = [_layer_input(layer_o, prev_o, saved_o, b) for b in range(len(batches))]
            for name in [n for n in order if n.startswith(f"model.{i}.")]:
                step += 1
                conv_p, conv_o = p_mods[name], o_mods[name]
                out_idx = torch.as_tensor(kept[name][0], dtype=torch.long)
                w0 = conv_p.weight.detach().double().flatten(1).T  # (inputs, outputs)
                fit = RidgeFit(*w0.shape)
                for x_p, x_o in zip(ins_p, ins_o):
                    cols = F.unfold(_capture(layer_p, conv_p, x_p, "in"), conv_p.kernel_size, conv_p.dilation,
                                    conv_p.padding, conv_p.stride)
                    z = _capture(layer_o, conv_o, x_o, "out")[:, out_idx]
                    fit.add(cols.transpose(1, 2).reshape(-1, w0.shape[0]),
                            z.flatten(2).transpose(1, 2).reshape(-1, len(out_idx)))
                if fit.n < MIN_SAMPLES_PER_WEIGHT * w0.shape[0]:  # too few samples for this many unknowns
                    if log:
                        log(f"reconstruct {step}/{len(order)} {name}: kept as is ({fit.n} samples for "
                            f"{w0.shape[0]} inputs; more calibration images or a larger imgsz would refit it)")
                    continue
                bn = bn_p.get(conv_p)
                if bn is None and conv_p.bias is None:  # nowhere to put the fitted bias
                    continue
                w, bias, before, after = fit.solve(w0, ridge)
                if after >= before:  # nothing to gain (e.g. the first layer, whose input is unchanged)
                    continue
                with torch.no_grad():
                    conv_p.weight.copy_(w.T.reshape(conv_p.weight.shape).to(conv_p.weight.dtype))
                    if bn is not None:  # z ~ x W + bias: the bias goes into the running mean
                        ref = bn_o[conv_o]
                        bn.running_mean.copy_((ref.running_mean.double()[out_idx] - bias).to(bn.running_mean.dtype))
                        bn.running_var.copy_(ref.running_var[out_idx])
                    elif conv_p.bias is not None:
                        conv_p.bias.copy_(bias.to(conv_p.bias.dtype))
                report[name] = (before, after)
                if log:
                    log(f"reconstruct {step}/{len(order)} {name}: error {before:.3f} -> {after:.3f}")
            if i == len(pruned.model) - 1:
                break
            with torch.no_grad():
                prev_p = [layer_p(x) for x in ins_p]
                prev_o = [layer_o(x) for x in ins_o]
            if i in save:
                saved_p[i], saved_o[i] = prev_p, prev_o
    finally:
        original.train(was[0])
        pruned.train(was[1])
    return report
