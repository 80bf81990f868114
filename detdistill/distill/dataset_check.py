"""A data YAML checked before training: read as ultralytics' trainer reads it, from the same folder as detdistill's
evaluation reads it, and, when ultralytics finds no image to train on, the label file that is why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from ultralytics.data.utils import check_det_dataset

from ..data.dataset import label_problem, load_dataset, read_data_yaml


def check_dataset(data: str | Path, download: bool = True) -> dict:
    """``data`` as ultralytics reads it for training and validation; a ``ValueError`` naming it when it cannot.

    ``download=False``: a YAML whose images are missing is an error even when it has a ``download:`` entry (which
    ultralytics would otherwise run: a URL, a shell or a Python script)."""
    ours = _our_root(data)
    try:
        dataset = check_det_dataset(str(data), autodownload=download)
    except Exception as e:
        # without ultralytics' lines about its download folder and an online YAML checker, which fix nothing here
        problem = "\n".join(line for line in str(e).splitlines()
                            if not line.startswith(("Note dataset download directory", "Verify YAML with")))
        if ours is not None and ours.is_dir() and _relative_path_key(data):
            problem += (f" (its relative path: is read by ultralytics from the current folder, else from its datasets "
                        f"folder, not from the YAML's folder, where {ours} is: {ROOT_FIX})")
        raise ValueError(f"dataset {str(data)!r} could not be read: {problem}") from e
    if ours is not None and ours.resolve() != Path(dataset["path"]).resolve():
        raise ValueError(f"{data}: its relative path: is read by ultralytics' trainer as "
                         f"{Path(dataset['path']).resolve()} (from the current folder) and by detdistill's evaluation "
                         f"as {ours} (from the YAML's folder), so training and scoring would read different images: "
                         f"{ROOT_FIX}")
    return dataset


ROOT_FIX = "write path: as an absolute folder, or leave it out to use the YAML's folder"


def _our_root(data: str | Path) -> Path | None:
    """The dataset root of ``data`` as detdistill's readers (evaluation, calibration) take it: a relative ``path:``
    from the YAML's folder, as its splits are (ultralytics' trainer reads it from the current folder)."""
    try:
        return load_dataset(data).root
    except (ValueError, OSError, yaml.YAMLError):
        return None  # a YAML ultralytics reads and detdistill's reader cannot is named where that reader runs


def _relative_path_key(data: str | Path) -> bool:
    try:
        path = read_data_yaml(data).get("path")
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return bool(path) and not Path(str(path)).is_absolute()


@contextmanager
def dataset_named(data: str | Path, error: type[Exception]) -> Iterator[None]:
    """Turn ultralytics' "No valid images found" (every image of a split dropped, each with a warning) into a
    ``error`` naming the first bad label file of ``data`` and the fix."""
    try:
        yield
    except RuntimeError as e:
        if "No valid images found" not in str(e):
            raise
        problem = label_problem(data) or (f"ultralytics found no usable image in a split of {data}; its warnings "
                                          "above name each image it dropped (unreadable images or labels)")
        raise error(f"no image of {data} can be trained on: {problem}") from None
