"""Seeded image corruptions (ImageNet-C / COCO-C protocol) and robustness evaluation through the deployed
pipeline: every corruption on a real coco8 image, determinism, the spec parser, and a real teacher scored
clean and corrupted, in Python and through `detdistill eval --corrupt`."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detdistill.data.corruptions import (
    CORRUPTIONS,
    MIN_SIDE,
    CorruptionError,
    corrupt,
    image_seed,
    one_condition,
    parse_spec,
)

pytest.importorskip("albumentations", reason="robustness evaluation needs pip install 'detdistill[robust]'")


@pytest.fixture(scope="module")
def image(coco8_yaml) -> tuple[np.ndarray, int]:
    path = sorted((coco8_yaml.parent / "images" / "val").glob("*.jpg"))[1]
    return cv2.imread(str(path)), image_seed(path)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_image_more_at_severity_5(image, name):
    img, seed = image
    mild, strong = (corrupt(img, name, s, seed) for s in (1, 5))
    for out in (mild, strong):
        assert out.shape == img.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    assert _diff(mild, img) > 1.0, name
    assert _diff(strong, img) > 1.2 * _diff(mild, img), name


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_deterministic_per_seed(image, name):
    img, seed = image
    first = corrupt(img, name, 3, seed)
    assert np.array_equal(first, corrupt(img.copy(), name, 3, seed))
    other = corrupt(img, name, 3, seed + 1)
    assert np.array_equal(first, other) != CORRUPTIONS[name].random  # the seed moves drops, noise, blur angle...


def test_tiny_images_take_every_corruption_down_to_the_smallest_side_and_smaller_are_named(image):
    img, seed = image
    for h, w in ((MIN_SIDE, MIN_SIDE + 1), (8, 8), (MIN_SIDE, 64)):
        crop = np.ascontiguousarray(img[:h, :w])
        for name in CORRUPTIONS:  # glare's sun radius is at least 2 pixels on any side
            for severity in range(1, 6):
                assert corrupt(crop, name, severity, seed).shape == (h, w, 3), (name, severity, h, w)
    tiny = np.ascontiguousarray(img[:MIN_SIDE - 1, :32])
    with pytest.raises(CorruptionError, match=rf"a 32x{MIN_SIDE - 1} image is too small to corrupt: .* at least "
                                              rf"{MIN_SIDE} pixels a side"):
        corrupt(tiny, "fog", 1, seed)


def test_seed_comes_from_the_file_name():
    assert image_seed("/a/000000000042.jpg") == image_seed(Path("b") / "000000000042.jpg")
    assert image_seed("a/1.jpg") != image_seed("a/2.jpg")


def test_spec_parser_and_its_errors():
    assert parse_spec("fog,rain:3, Motion-Blur:5,fog") == [("fog", None), ("rain", 3), ("motion_blur", 5)]
    assert parse_spec("all") == [(n, None) for n in CORRUPTIONS]
    assert parse_spec(["noise:1", "jpeg"]) == [("noise", 1), ("jpeg", None)]
    assert one_condition(("Motion-Blur", 3)) == one_condition("motion_blur:3") == ("motion_blur", 3)  # one reading
    with pytest.raises(CorruptionError, match=r"unknown corruption 'smoke': choose from fog, rain, snow, glare"):
        parse_spec("fog,smoke")
    for bad in ("fog:0", "fog:6"):
        with pytest.raises(CorruptionError, match="severity must be an integer from 1 .* to 5"):
            parse_spec(bad)
    with pytest.raises(CorruptionError, match="after ':' must be an integer"):
        parse_spec("fog:high")
    with pytest.raises(CorruptionError, match="no corruption given"):
        parse_spec(" , ")
    assert parse_spec("fog:3,fog:5") == [("fog", 3), ("fog", 5)]  # two settings of one corruption
    for twice in ("fog,fog:3", "all,noise:2"):  # alone means severities 1-5: the mean would count it twice
        alone = "'all' names it alone" if twice.startswith("all") else "it is given alone"
        with pytest.raises(CorruptionError, match=rf"{alone}, .* counted twice; give either '(fog|noise)' or"):
            parse_spec(twice)
    with pytest.raises(CorruptionError, match=r"corruption 'all': severity .* got 0; leave it out \(e.g. 'all'\)"):
        parse_spec("all:0")  # named as given (it blamed fog, the first of all)
    with pytest.raises(CorruptionError, match=r"severity must be .* got 9$"):  # no hint of the CLI's spec form
        corrupt(np.zeros((8, 8, 3), np.uint8), "noise", 9, 0)
    with pytest.raises(CorruptionError, match="got 3.0"):  # was a TypeError from a float index
        corrupt(np.zeros((8, 8, 3), np.uint8), "noise", 3.0, 0)
    with pytest.raises(CorruptionError, match="integer seed"):
        corrupt(np.zeros((8, 8, 3), np.uint8), "noise", 3, "abc")
    with pytest.raises(CorruptionError, match="one severity"):
        corrupt(np.zeros((8, 8, 3), np.uint8), "noise", None, 0)


def test_missing_albumentations_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "albumentations", None)  # import fails as when not installed
    with pytest.raises(CorruptionError, match=r"pip install 'detdistill\[robust\]'") as err:
        corrupt(np.zeros((8, 8, 3), np.uint8), "fog", 1, 0)
    # the extra's headless OpenCV would hide a GUI or GStreamer one: the way around it is in the message
    assert "pip install --no-deps albumentations==2.0.8 albucore==0.0.24" in str(err.value)


def test_corrupted_map_is_lower_than_clean(tmp_path_factory, teacher_pt, coco_mini_yaml):
    from detdistill.export.evaluate import evaluate, open_detector
    from conftest import export_teacher

    det = open_detector(export_teacher(tmp_path_factory, teacher_pt))
    clean = evaluate(det, coco_mini_yaml, limit=16)
    assert clean.images == 16 and clean.map50_95 > 0.2
    for c in (("fog", 5), "noise:5"):  # a pair, or the CLI's own spelling
        r = evaluate(det, coco_mini_yaml, limit=16, corrupt=c)
        assert r.images == clean.images and r.instances == clean.instances  # same images, same labels
        assert r.map50_95 < clean.map50_95 - 0.02, (c, r.map50_95, clean.map50_95)
    assert evaluate(det, coco_mini_yaml, limit=4, corrupt="Fog:5").map50_95 == \
        evaluate(det, coco_mini_yaml, limit=4, corrupt=("fog", 5)).map50_95
    with pytest.raises(CorruptionError, match="unknown corruption"):
        evaluate(det, coco_mini_yaml, limit=1, corrupt=("haze", 1))
    for several in ("fog:3,rain:2", [("fog", 3), ("rain", 2)], "fog", ("fog",)):
        with pytest.raises(CorruptionError, match=r"one corruption at one severity, as 'fog:3' or \('fog', 3\)"):
            evaluate(det, coco_mini_yaml, limit=1, corrupt=several)


def test_eval_cli_prints_each_corruption_and_the_mean(tmp_path_factory, teacher_pt, coco_mini_yaml):
    import typer
    from typer.testing import CliRunner

    from detdistill.export.cli import register
    from conftest import export_teacher

    app = typer.Typer()
    register(app)
    onnx_path = export_teacher(tmp_path_factory, teacher_pt)
    out = CliRunner().invoke(app, ["eval", str(onnx_path), "--data", str(coco_mini_yaml), "--limit", "4",
                                   "--corrupt", "noise:5,jpeg"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("teacher320.onnx: mAP50-95")
    assert lines[1].split()[:2] == ["noise:5", "mAP50-95"]
    assert lines[2].startswith("  jpeg (mean of 1-5)") and "severities 1-5:" in lines[2]
    per_severity = [float(v.rstrip(")")) for v in lines[2].split("severities 1-5:")[1].split()]
    assert len(per_severity) == 5 and abs(np.mean(per_severity) - float(lines[2].split()[5])) < 1e-4
    noise, jpeg = float(lines[1].split()[2]), float(lines[2].split()[5])
    assert lines[3].startswith("  mean under corruption") and "rPC" in lines[3]
    assert abs(float(lines[3].split()[4]) - (noise + jpeg) / 2) < 1e-4
    bad = CliRunner().invoke(app, ["eval", str(onnx_path), "--data", str(coco_mini_yaml), "--corrupt", "fog:7"])
    assert bad.exit_code == 2 and "severity must be an integer from 1" in bad.output


def test_a_corruption_scored_at_two_severities_counts_once_in_mpc():
    """mPC is the mean over corruptions of each one's mean over its severities: fog:3 and fog:5 together weigh as
    much as rain:3 (it was the plain mean of the rows, fog counted twice); rPC follows."""
    from detdistill.export.robustness import robustness

    scores = {None: 0.5, ("fog", 3): 0.4, ("fog", 5): 0.2, ("rain", 3): 0.1}
    r = robustness(scores.__getitem__, parse_spec("fog:3,fog:5,rain:3"))
    assert list(r.per_corruption) == ["fog:3", "fog:5", "rain:3"]
    assert r.mpc == pytest.approx(((0.4 + 0.2) / 2 + 0.1) / 2) and r.rpc == pytest.approx(r.mpc / 0.5)
    every = {None: 0.5, **{("fog", s): 0.1 * s for s in range(1, 6)}, ("rain", 3): 0.1}
    assert robustness(every.__getitem__, parse_spec("fog,rain:3")).mpc == pytest.approx((0.3 + 0.1) / 2)
