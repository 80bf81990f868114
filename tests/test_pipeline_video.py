"""The demo stage's input video: rebuilt when its images or their count change, never reused half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import val_images, video_frame_count
from detdistill.pipeline.video import video_from_images


def test_the_video_is_rebuilt_for_other_images_and_reused_for_the_same(tmp_path, coco_mini_yaml):
    images, out = val_images(coco_mini_yaml, 5), tmp_path / "demo-input.mp4"
    assert video_from_images(images[:3], out) == out and video_frame_count(out) == 3
    made = out.stat().st_mtime_ns
    video_from_images(images[:3], out)
    assert out.stat().st_mtime_ns == made  # the same images: reused
    video_from_images(images[:5], out)  # demo.frames raised
    assert video_frame_count(out) == 5
    video_from_images(images[1:4], out)  # as many frames, other images
    assert video_frame_count(out) == 3 and out.stat().st_mtime_ns != made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-input.mp4", "demo-input.mp4.json"]


def test_an_edited_image_rebuilds_the_video(tmp_path, coco_mini_yaml):
    images = [Path(shutil.copy(p, tmp_path / p.name)) for p in val_images(coco_mini_yaml, 2)]
    out = tmp_path / "video" / "in.mp4"
    out.parent.mkdir()
    video_from_images(images, out)
    made = out.stat().st_mtime_ns
    shutil.copy(val_images(coco_mini_yaml, 3)[2], images[1])  # the second image replaced by another
    video_from_images(images, out)
    assert out.stat().st_mtime_ns != made and video_frame_count(out) == 2


def test_a_video_without_its_record_is_rebuilt_and_a_failed_write_leaves_none(tmp_path, coco_mini_yaml, monkeypatch):
    images, out = val_images(coco_mini_yaml, 2), tmp_path / "demo-input.mp4"
    out.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a half-written video of an older version
    video_from_images(images, out)
    assert video_frame_count(out) == 2

    import cv2

    out.unlink()
    read = cv2.imread
    calls = []

    def killed_midway(path, *args):
        calls.append(path)
        if len(calls) == 3:  # the first image twice (size, frame), then the second: the run is killed
            raise KeyboardInterrupt
        return read(path, *args)

    monkeypatch.setattr(cv2, "imread", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        video_from_images(images, out)
    assert list(tmp_path.iterdir()) == []  # no video, no record, no temporary file


def test_no_images_or_an_unreadable_first_image_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no images to make the demo video from"):
        video_from_images([], tmp_path / "v.mp4")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read .*broken.jpg as an image, the first frame of the demo video"):
        video_from_images([bad], tmp_path / "v.mp4")
