"""One step of the pruning loop: torch-pruning's channel counts per group, rounded, paired, applied cheapest first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def round_keep(keep: float, channels: int, round_to: int) -> int:
    """``keep`` rounded to a multiple of ``round_to`` (at least one multiple) and at most ``channels``."""
    if round_to <= 1:
        return max(1, min(round(keep), channels))
    k = max(round_to, round(keep / round_to) * round_to)
    return min(k, channels)


def prune_step(pruner: Any, pairs: list[tuple], round_to: int, reached: Callable[[], bool] | None = None,
               observers: Sequence[Any] = ()) -> int:
    """One pruning step: take torch-pruning's channel counts per group, round every width to ``round_to``,
    give both halves of a C2f ``cv1`` the same width, and drop each group's least important channels.

    Groups are pruned in order of the (normalized) importance of what they lose, cheapest first; after each
    one, ``reached()`` may end the step early (the target is met). ``observers`` (compensation, channel
    bookkeeping) see every group just before it is applied. Returns the number of channels removed.
    """
    import torch  # lazy: torch, torch_pruning (the CLI loads prune's verbs without them)
    import torch_pruning as tp

    dg = pruner.DG
    members = {m for pair in pairs for m in pair}
    planned, root_of = {}, {}
    for group in pruner.step(interactive=True):  # ranking only; groups are rebuilt below, one at a time
        dep, idxs = group[0]
        if not dg.is_out_channel_pruning_fn(dep.handler):
            continue
        root = dep.target.module
        planned[root] = (dep.handler, len(idxs))
        for d, _ in group:  # a half of cv1 may sit in a group rooted elsewhere (residual bottlenecks)
            if d.target.module in members and dg.is_out_channel_pruning_fn(d.handler):
                root_of[d.target.module] = root
    keep = {}
    for root, (fn, n) in planned.items():
        ch = dg.get_out_channels(root)
        keep[root] = (fn, round_keep(ch - n, ch, round_to))
    jobs, paired = [], set()
    for a, b in pairs:
        ra, rb = root_of.get(a), root_of.get(b)
        if ra is None and rb is None:
            continue
        ch = dg.get_out_channels(a)
        kept = [ch - (planned[r][1] if r is not None else 0) for r in (ra, rb)]
        k = round_keep(sum(kept) / 2, ch, round_to)
        job = []
        for member, r in ((a, ra), (b, rb)):
            root = r if r is not None else member  # a half torch-pruning left alone this step: its own group
            job.append((root, planned[r][0] if r is not None else tp.prune_conv_out_channels, k))
            paired.add(root)
        jobs.append(job)
    jobs += [[(root, fn, k)] for root, (fn, k) in keep.items() if root not in paired]

    plans = []  # (cost, [(root, fn, drop idxs)])
    for job in jobs:
        plan, cost, n = [], 0.0, 0
        for root, fn, k in job:
            ch = dg.get_out_channels(root)
            if k >= ch:
                continue
            imp = pruner.estimate_importance(dg.get_pruning_group(root, fn, list(range(ch))))
            if imp is None:
                continue
            imp = imp.float().cpu()
            order = torch.argsort(imp)[: ch - k]
            plan.append((root, fn, sorted(order.tolist())))
            cost += float(imp[order].sum() / imp.sum().clamp_min(1e-12))
            n += ch - k
        if plan:
            plans.append((cost / max(n, 1), plan))
    plans.sort(key=lambda p: p[0])
    removed = 0
    for _, plan in plans:
        for root, fn, drop in plan:  # groups are rebuilt now: earlier prunes move concat offsets
            group = dg.get_pruning_group(root, fn, drop)
            if dg.check_pruning_group(group):
                for observer in observers:
                    observer.before_prune(dg, group)
                group.prune()
                removed += len(drop)
        if reached is not None and reached():
            break
    return removed
