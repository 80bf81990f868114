"""Reading a set of images: the usable ones decoded once, the others left out with a note, none usable refused."""

import cv2
import numpy as np
import pytest

from detdistill.data import images as images_module
from detdistill.data.images import ImageError, read_usable_images, usable_images


def test_read_usable_images_decodes_each_file_once_and_notes_the_left_out(coco_mini_yaml, tmp_path, monkeypatch):
    good = sorted((coco_mini_yaml.parent / "images" / "val").glob("*.jpg"))[:3]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good[0].read_bytes()[:2000])  # OpenCV would decode it, grey below the cut
    files = [good[0], cut, good[1], tmp_path / "missing.jpg", good[2]]
    reads = []
    real_imread = cv2.imread
    monkeypatch.setattr(images_module.cv2, "imread", lambda *a: reads.append(a[0]) or real_imread(*a))

    decoded, note = read_usable_images(files, "frames")

    assert reads == [str(f) for f in good]  # the two bad files are never decoded, the good ones once each
    assert len(decoded) == 3 and all(np.array_equal(d, real_imread(str(f))) for d, f in zip(decoded, good))
    assert note.startswith("skipped 2 of 5 frames") and "cut.jpg: truncated JPEG" in note
    assert usable_images(files, "frames") == (good, note)  # the paths variant agrees


def test_read_usable_images_refuses_a_set_with_nothing_usable(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG cut off")
    with pytest.raises(ImageError, match=r"none of the 1 frames is usable \(.*a.png: truncated PNG"):
        read_usable_images([tmp_path / "a.png"], "frames")
    with pytest.raises(ImageError, match="no frames given"):
        read_usable_images([], "frames")
