"""Torch-free inference: letterbox, backends (ONNX Runtime, TensorRT), decode + NMS, ``Detector``.

This package imports neither torch nor ultralytics so that it runs on a bare Jetson image.
"""

from .detector import Detections, Detector
from .letterbox import LetterboxInfo, letterbox, preprocess

__all__ = ["Detector", "Detections", "letterbox", "preprocess", "LetterboxInfo"]
