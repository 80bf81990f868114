"""The runtime letterbox is pixel-identical to ultralytics' validation (square and rect) and prediction paths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detdistill.runtime.letterbox import letterbox, to_input


def _val_dataset(coco_mini_yaml, imgsz: int, rect: bool, batch: int = 1):
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": imgsz, "rect": rect, "task": "detect", "mode": "val"})
    data = check_det_dataset(str(coco_mini_yaml))
    return build_yolo_dataset(cfg, data["val"], batch, data, mode="val", stride=32)


@pytest.mark.parametrize("imgsz", [320, 640])
def test_val_letterbox_matches_ultralytics_square(coco_mini_yaml, imgsz):
    ds = _val_dataset(coco_mini_yaml, imgsz, rect=False)
    for i in range(0, len(ds), 4):  # 32 real COCO images of various shapes
        s = ds[i]
        ref = s["img"].numpy().transpose(1, 2, 0)[..., ::-1]  # RGB CHW -> BGR HWC
        mine, info = letterbox(cv2.imread(s["im_file"]), imgsz, mode="val")
        assert mine.shape == ref.shape
        assert np.array_equal(mine, ref), s["im_file"]
        (gy, gx), pad = s["ratio_pad"]
        assert pad == info.pad and np.allclose((gy, gx), info.gain, atol=1e-6)


def test_val_letterbox_matches_ultralytics_rect(coco_mini_yaml):
    ds = _val_dataset(coco_mini_yaml, 320, rect=True, batch=8)
    for i in range(0, len(ds), 8):
        s = ds[i]
        ref = s["img"].numpy().transpose(1, 2, 0)[..., ::-1]
        mine, _ = letterbox(cv2.imread(s["im_file"]), ref.shape[:2], mode="val", long_side=320)
        assert np.array_equal(mine, ref), s["im_file"]


def test_predict_letterbox_matches_ultralytics(coco_mini_yaml):
    from ultralytics.data.augment import LetterBox

    img = cv2.imread(str(next((coco_mini_yaml.parent / "images" / "val").glob("*.jpg"))))
    # real pixels at awkward sizes: odd sides, portrait, tiny, larger than the target
    crops = [img, img[:301, :457], img[:411, :97], img[:17, :33], cv2.resize(img, (1283, 851))]
    for im in crops:
        for shape in (320, (384, 640)):
            ref = LetterBox(shape, auto=False)(image=im)
            mine, _ = letterbox(im, shape, mode="predict")
            assert np.array_equal(mine, ref), (im.shape, shape)
        ref = LetterBox(320, auto=True, stride=32)(image=im)
        assert np.array_equal(letterbox(im, 320, mode="predict", auto=True)[0], ref)


def test_to_input_layout():
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    x = to_input(img)
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, 2].max() == 1.0 and x[0, 0].max() == 0.0  # blue ends up last (RGB)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), "frame.jpg"])
def test_bad_frames_are_rejected(bad):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        letterbox(bad, 320)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        letterbox(np.zeros((10, 10, 3), np.uint8), 320, mode="stretch")
