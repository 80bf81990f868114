"""The generated shapes dataset: reused only when it was made with the same settings."""

from __future__ import annotations

from detdistill.data.dataset import load_dataset
from detdistill.data.shapes import make_shapes_dataset


def test_a_dataset_of_other_settings_is_replaced_not_reused(tmp_path):
    """A quickstart --tiny work folder rerun without --tiny kept the tiny images and said the data stage was done
    again; now the images match the settings asked for."""
    yaml_path = make_shapes_dataset(tmp_path, n_train=6, n_val=3, size=64, seed=1)
    counts = lambda: {s: len(load_dataset(yaml_path).images(s)) for s in ("train", "val")}  # noqa: E731
    assert counts() == {"train": 6, "val": 3}
    first = (tmp_path / "images" / "train" / "00000.jpg").read_bytes()
    stamp = yaml_path.stat().st_mtime_ns
    assert make_shapes_dataset(tmp_path, n_train=6, n_val=3, size=64, seed=1) == yaml_path
    assert yaml_path.stat().st_mtime_ns == stamp  # the same settings: reused as it is
    make_shapes_dataset(tmp_path, n_train=4, n_val=5, size=64, seed=1)
    assert counts() == {"train": 4, "val": 5}  # no image of the first settings left beside the new ones
    make_shapes_dataset(tmp_path, n_train=4, n_val=5, size=64, seed=2)
    assert (tmp_path / "images" / "train" / "00000.jpg").read_bytes() != first
    yaml_path.write_text(yaml_path.read_text().split("\n", 1)[1])  # no settings line (an older dataset): made again
    make_shapes_dataset(tmp_path, n_train=2, n_val=2, size=64, seed=2)
    assert counts() == {"train": 2, "val": 2}
