"""detdistill: distill YOLO detectors into small students and deploy them to Jetson.

Sub-packages: ``distill`` (training, needs torch + ultralytics), ``runtime`` (torch-free
inference), ``export`` (ONNX, INT8, TensorRT), ``data`` (dataset helpers).
"""

__version__ = "0.1.0"
