"""The layers whose width pruning must not change, and a note on each choice for the user."""

from __future__ import annotations

from typing import Any

from .halves import has_attention

PRUNABLE_LAYERS = ("Conv", "C2f", "C3k2", "C3", "C3k", "C2", "SPPF", "Concat", "Upsample", "Detect", "v10Detect")


def ignored_layers(model: Any) -> tuple[list, list[str]]:
    """Modules torch-pruning must not shrink, and a description of each choice.

    * the Detect head's last box/class convolutions (their widths are 4*reg_max and nc) and the DFL;
    * attention blocks (C2PSA, PSA, C3k2 with PSABlock) and layer types not known here: their input
      projection and inner modules keep their width; their output conv ``cv2`` (if any) is pruned.
    """
    from torch import nn  # lazy: torch (the CLI loads prune's verbs without it)

    head = model.model[-1]
    ignored, notes = [], []
    for name in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
        branch = getattr(head, name, None)
        if branch is not None:
            ignored += [seq[-1] for seq in branch]
    if isinstance(getattr(head, "dfl", None), nn.Module):
        ignored.append(head.dfl)
    notes.append(f"model.{len(model.model) - 1} Detect: final box/class convs and DFL keep their width")
    for i, layer in enumerate(model.model[:-1]):
        kind = type(layer).__name__
        if kind in PRUNABLE_LAYERS and not has_attention(layer):
            continue
        keep = [layer.cv2] if isinstance(getattr(layer, "cv2", None), nn.Module) else []
        inner = [m for m in layer.children() if all(m is not k for k in keep)]
        if not inner:
            continue
        ignored += inner
        what = "attention block" if has_attention(layer) else "layer type not handled"
        notes.append(f"model.{i} {kind}: {what}, inner width kept" + (" (output cv2 pruned)" if keep else ""))
    return ignored, notes
