"""Recipe validation (errors name the bad field) and KD schedules."""

from __future__ import annotations

import dataclasses

import pytest

from detdistill.distill.recipe import RecipeError, builtin_recipes, load_recipe, parse_recipe
from detdistill.distill.schedule import Schedule


def test_builtin_recipes_all_parse():
    names = builtin_recipes()
    assert {"default", "cwd", "pkd", "mgd", "fgfi", "logit", "ld", "logit-box", "hires", "at"} <= set(names)
    for name in names:
        assert load_recipe(name).losses
    assert load_recipe() == load_recipe("default") == load_recipe("at")   # the default is attention transfer
    assert [s.type for s in load_recipe("at").losses] == ["at"]
    logit_box = load_recipe("logit-box")
    assert [s.type for s in logit_box.losses] == ["logit", "box"] and logit_box.region == "teacher"
    assert logit_box.losses[0].params["dense"] is True and load_recipe("logit").losses[0].params["dense"] is False
    assert load_recipe("hires").teacher_scale == 2.0  # box KD allowed: the pyramid is shifted, not resampled


@pytest.mark.parametrize(
    "data, message",
    [
        ({"losses": [{"type": "cwd", "tua": 1.0}]}, r"losses\[0\]\.tua: unknown field.*valid fields: type, weight, name, tau"),
        ({"losses": [{"type": "kl"}]}, r"losses\[0\]\.type: 'kl' is not a loss"),
        ({"losses": [{"type": "logit", "temperature": "hot"}]}, r"losses\[0\]\.temperature: expected a number"),
        ({"losses": [{"type": "logit", "temperature": 0}]}, r"temperature: must be > 0"),
        ({"losses": [{"type": "logit", "dense": "yes"}]}, r"losses\[0\]\.dense: expected true or false"),
        ({"losses": [{"type": "cwd"}, {"type": "cwd"}]}, r"losses\[1\]\.name: 'cwd' is used twice"),
        ({"losses": []}, r"losses: expected a non-empty list"),
        ({"losses": [{"type": "cwd"}], "schedule": {"kind": "step"}}, r"schedule\.kind: 'step'"),
        ({"losses": [{"type": "cwd"}], "schedule": {"until": 3}}, r"schedule\.until: unknown field"),
        ({"losses": [{"type": "cwd"}], "region": "boxes"}, r"region: 'boxes'"),
        ({"losses": [{"type": "cwd"}], "epochs": 3}, r"unknown field 'epochs'"),
        ({"path": "coco8", "train": "images/train", "val": "images/val", "names": {0: "person"}},
         r"is a dataset YAML \(names:, train:/val:\), not a KD recipe: pass it to --data"),
        ({"losses": [{"type": "ld"}], "teacher_scale": 1.5},
         r"teacher_scale: box losses need.*use teacher_scale 1, 2, 4"),
        ({"losses": [{"type": "mgd", "mask_ratio": 1.5}]}, r"mask_ratio: must be in \[0, 1\)"),
        ({"losses": [{"type": "cwd"}], "adapter_init": "zeros"}, r"adapter_init: 'zeros' is not one of fit, random"),
        ({"losses": [{"type": "at", "p": 0}]}, r"losses\[0\]\.p: must be > 0"),
        ({"losses": [{"type": "at", "weight": float("nan")}]}, r"losses\[0\]\.weight: must be a finite number"),
        ({"losses": [{"type": "cwd"}], "teacher_scale": float("nan")}, r"teacher_scale: must be a finite number"),
        ({"losses": [{"type": "cwd"}], "schedule": {"final": float("inf")}}, r"schedule\.final: must be a finite"),
        ({"losses": [{"type": "cwd"}], "schedule": {"stop_last": 1.5}}, r"stop_last.*whole number of epochs"),
        ({"losses": [{"type": ["at"]}]}, r"losses\[0\]\.type: \['at'\] is not a loss; choose one of"),
        ({"losses": [{"type": "at", "name": None}]}, r"losses\[0\]\.name: expected letters, digits or '_'"),
        ({"losses": [{"type": "at", "name": "kd at"}]}, r"losses\[0\]\.name: .* got 'kd at'"),  # a CSV column
        ({"losses": [{"weight": 1}]}, r"losses\[0\]: no type: give one of"),
        ({"losses": [{"type": "at", "weight": 0}, {"type": "logit", "weight": 0.0}]},
         r"every loss has weight 0, so nothing would be distilled"),
        ({"losses": [{"type": "cwd"}], "schedule": 0}, r"schedule: expected a mapping"),
        ({"losses": [{"type": "cwd"}], "schedule": {"final": 0.1}},
         r"schedule\.final: a constant schedule .* kind: cosine"),
        ({"losses": [{"type": "cwd"}], "teacher_scale": 100}, r"teacher_scale: at most 4 .*got 100"),
    ],
)
def test_bad_fields_are_named(data, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(data, "my.yaml")


def test_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found.*default"):
        load_recipe("no-such-recipe")
    bad = tmp_path / "bad.yaml"
    bad.write_text("losses: [\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text("losses:\n  - {type: at}\nlosses:\n  - {type: cwd}\n")
    with pytest.raises(RecipeError, match=r"twice.yaml: not valid YAML: found the key 'losses' twice \(first on line "
                                          r"1\).*keep one, line 3 column 1$"):
        load_recipe(twice)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    with pytest.raises(RecipeError, match="binary.yaml: not a text file"):
        load_recipe(binary)
    with pytest.raises(RecipeError, match="is a folder"):
        load_recipe(tmp_path)
    for not_a_recipe in (0, False, []):  # a falsy value of another type is not the default recipe
        with pytest.raises(RecipeError, match=f"a recipe is a built-in name .*; got {type(not_a_recipe).__name__}"):
            load_recipe(not_a_recipe)
    good = tmp_path / "good.yaml"
    good.write_text("losses:\n  - {type: pkd, weight: 2}\nschedule: {kind: linear, final: 0.5, stop_last: 1}\n")
    recipe = load_recipe(good)
    assert recipe.losses[0].weight == 2.0 and recipe.schedule == Schedule("linear", 0.5, 1)
    tiny = tmp_path / "tiny.yaml"  # exponent floats without a dot are numbers, as in YAML 1.2
    tiny.write_text("losses:\n  - {type: logit, temperature: 1e-3, weight: 2e0}\n")
    assert load_recipe(tiny).losses[0].params["temperature"] == 0.001 and load_recipe(tiny).losses[0].weight == 2.0
    assert dataclasses.replace(parse_recipe(recipe.to_dict()), source=recipe.source) == recipe  # round-trips


def test_schedules():
    assert [Schedule().factor(e, 4) for e in range(4)] == [1.0, 1.0, 1.0, 1.0]
    lin = [Schedule("linear", 0.0, 1).factor(e, 5) for e in range(5)]
    assert lin == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    cos = [Schedule("cosine", 0.1).factor(e, 3) for e in range(3)]
    assert cos == pytest.approx([1.0, 0.55, 0.1])
    # stop for the no-mosaic epochs, capped at a quarter of the run
    assert [Schedule(stop_last="close_mosaic").factor(e, 100, close_mosaic=10) for e in (89, 90)] == [1.0, 0.0]
    assert [Schedule(stop_last="close_mosaic").factor(e, 8, close_mosaic=10) for e in (5, 6)] == [1.0, 0.0]


def test_a_new_loss_is_one_registration(monkeypatch):
    import torch

    from detdistill.distill import registry
    from detdistill.distill.distiller import Distiller
    from detdistill.data.class_map import ClassMap

    class Cosine(torch.nn.Module):
        def forward(self, s, t, weight=None):
            return 1 - torch.nn.functional.cosine_similarity(s.flatten(1), t.detach().flatten(1)).mean()

    from detdistill.distill.losses import loss_types

    monkeypatch.setattr(registry, "_LOSSES", dict(loss_types()))
    registry.register_loss("cosine", "feature", {"eps": 1e-6}, lambda p, ctx: Cosine())
    recipe = parse_recipe({"losses": [{"type": "cosine", "weight": 2.0}]})
    assert recipe.losses[0].family == "feature" and recipe.losses[0].params == {"eps": 1e-6}
    names = ("a", "b")
    d = Distiller(recipe, [16, 32, 64], [32, 64, 128], 16, 16, ClassMap(names, names, ((0,), (1,))))
    assert [type(m).__name__ for m in d.losses["cosine"]] == ["Cosine"] * 3 and len(d.adapters["cosine"]) == 3
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_loss("cosine", "feature", {}, lambda p, ctx: Cosine())
    with pytest.raises(RecipeError, match=r"losses\[0\]\.eps: expected a number"):
        parse_recipe({"losses": [{"type": "cosine", "eps": "small"}]})
