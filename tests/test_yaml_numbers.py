"""The YAML reader of recipes, pipeline files and train arguments: exponent floats, repeated keys, merge keys."""

from __future__ import annotations

import pytest
import yaml

from detdistill.yaml_numbers import load_yaml, yaml_problem


def test_merge_keys_take_the_anchor_and_let_the_mapping_override_it():
    text = """
common: &common {epochs: 10, lr0: 1e-4, workers: 2}
train:
  <<: *common
  workers: 0
"""
    assert load_yaml(text)["train"] == {"epochs": 10, "lr0": 1e-4, "workers": 0}


def test_a_key_given_twice_is_still_refused_beside_a_merge():
    text = "base: &b {a: 1}\ntrain:\n  <<: *b\n  epochs: 1\n  epochs: 2\n"
    with pytest.raises(yaml.YAMLError) as e:
        load_yaml(text)
    assert yaml_problem(e.value).startswith("found the key 'epochs' twice (first on line 4)"), yaml_problem(e.value)
