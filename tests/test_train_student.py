"""StudentTrainer's model handling: a pruned student is trained as it is, with the dataset's class count."""

from __future__ import annotations

import copy

import torch
from ultralytics.nn.tasks import DetectionModel

from detdistill.distill.taps import detect_head
from detdistill.train import differs_from_yaml, set_class_count


def _model(nc: int = 80) -> DetectionModel:
    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=nc, verbose=False)


def test_only_other_layer_shapes_count_as_a_different_architecture():
    model = _model()
    assert not differs_from_yaml(model, _model())
    assert not differs_from_yaml(model, _model(nc=5))  # a new class count is ultralytics' usual fine-tuning
    narrowed = copy.deepcopy(model)
    conv = narrowed.model[0].conv
    conv.weight = torch.nn.Parameter(conv.weight[:8].clone())
    assert differs_from_yaml(narrowed, _model())
    marked = copy.deepcopy(model)
    marked.yaml["pruned"] = True
    assert differs_from_yaml(marked, _model())


def test_new_class_layers_start_from_the_mapped_classes():
    model = _model()
    head = detect_head(model)
    old = [copy.deepcopy(seq[-1]) for seq in head.cv3]
    sources = [(2, 7), (5,), ()]  # e.g. Ambulance <- car, truck; Bus <- bus; a class the old model lacks
    set_class_count(model, 3, sources)
    assert (head.nc, head.no) == (3, 3 + 4 * head.reg_max) and model.yaml["nc"] == 3
    for before, seq in zip(old, head.cv3):
        new = seq[-1]
        assert new.out_channels == 3
        torch.testing.assert_close(new.weight[0], before.weight[[2, 7]].mean(0))
        torch.testing.assert_close(new.bias[1], before.bias[5])
        assert new.bias[2] < -4  # the prior: a rare positive, not the teacher's rows
    model.eval()
    out = model(torch.zeros(1, 3, 64, 64))
    assert (out[0] if isinstance(out, (list, tuple)) else out).shape[1] == 4 + 3
