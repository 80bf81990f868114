"""Class names as detdistill matches them, across models, datasets and COCO (torch-free)."""

from __future__ import annotations


def class_key(name: object) -> str:
    """A class name as names are matched: case, ``_``, ``-`` and extra spaces aside (``Traffic_Light`` is
    ``traffic light``)."""
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())
