"""PruneConfig: every pruning setting is checked once, and a bad one is named with its value and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detdistill.prune import PruneConfig, PruneConfigError, PruneError, prune_checkpoint


@pytest.mark.parametrize(("settings", "field", "message"), [
    ({"target": 0}, "target", "target must be between 0 and 1 (the fraction of gflops to keep, e.g. 0.5), got 0"),
    ({"target": 1.0}, "target", "target must be between 0 and 1"),
    ({"target": "half", "metric": "params"}, "target", "(the fraction of params to keep, e.g. 0.5), got 'half'"),
    ({"target": True}, "target", "got True"),
    ({"metric": "latency"}, "metric", "metric must be gflops or params, got 'latency'"),
    ({"importance": "magic"}, "importance", "importance must be one of var, l1, l2, lamp, bn, fpgm, got 'magic'"),
    ({"max_layer_ratio": 1.2}, "max_layer_ratio", "max_layer_ratio must be between 0 and 1 (the most of any one"),
    ({"iterative_steps": 0}, "iterative_steps", "iterative_steps must be at least 1, got 0"),
    ({"round_to": 2.5}, "round_to", "round_to must be at least 1, got 2.5"),
    ({"calib_images": 0}, "calib_images", "calib_images must be at least 1, got 0"),
    ({"imgsz": 100}, "imgsz", "imgsz must be a positive multiple of 32 (e.g. 640), got 100"),
    ({"imgsz": 0}, "imgsz", "imgsz must be a positive multiple of 32"),
    ({"refit": "yes"}, "refit", "refit must be true or false, got 'yes'"),
    ({"half": 1}, "half", "half must be true or false, got 1"),
    ({"calib": "no/such/images"}, "calib", "calib source no/such/images does not exist; pass a data YAML, a folder"),
])
def test_bad_value_names_field_value_and_fix(settings, field, message):
    with pytest.raises(PruneConfigError) as info:
        PruneConfig(**settings)
    assert info.value.field == field and message in str(info.value)
    assert isinstance(info.value, PruneError) and isinstance(info.value, ValueError)  # callers catch either


def test_values_are_normalised_and_frozen(tmp_path):
    config = PruneConfig(importance="LAMP", calib=str(tmp_path), target=0.3)
    assert config.importance == "lamp" and config.calib == tmp_path and isinstance(config.calib, Path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.target = 0.9
    assert PruneConfig().calib is None and PruneConfig().target == 0.5


def test_replace_checks_names_and_values():
    config = PruneConfig(target=0.4)
    assert config.replace(imgsz=320) == PruneConfig(target=0.4, imgsz=320)
    with pytest.raises(PruneConfigError, match="taget is not a pruning setting; the settings are target, metric"):
        config.replace(taget=0.5)
    with pytest.raises(PruneConfigError, match="round_to must be at least 1, got 0"):
        config.replace(round_to=0)


def test_prune_checkpoint_checks_settings_before_loading(tmp_path):
    """Bad settings fail before the (missing) checkpoint is read; keywords and a config object are one API."""
    missing = tmp_path / "missing.pt"
    with pytest.raises(PruneConfigError, match="target must be between 0 and 1"):
        prune_checkpoint(missing, None, target=2)
    with pytest.raises(PruneConfigError, match="metric must be gflops or params"):
        prune_checkpoint(missing, None, PruneConfig(target=0.4), metric="ms")
    with pytest.raises(TypeError, match="config must be a PruneConfig, got 0.5"):
        prune_checkpoint(missing, None, 0.5)
    with pytest.raises(PruneError, match="missing.pt does not exist"):
        prune_checkpoint(missing, None, PruneConfig(target=0.4))
