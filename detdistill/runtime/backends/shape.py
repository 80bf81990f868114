"""The check of an input's shape against a model's, shared by the backends (its own module: no import cycle)."""

from __future__ import annotations


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) if d > 0 else "any" for d in shape)


def check_input(shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    """Refuse an input ``shape`` that a fixed axis of the model's input shape ``expected`` (-1: dynamic) does not
    take; ONNX Runtime would only say INVALID_ARGUMENT, TensorRT log an error."""

    def fits(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
        return len(got) == len(want) and all(w < 0 or g == w for g, w in zip(got, want))

    if fits(shape, expected):
        return
    if fits(shape[1:], expected[1:]):
        raise ValueError(f"a batch of {shape[0]}: this model takes a fixed batch of {expected[0]}; pass that many "
                         "images per call, or export it again with --dynamic (then build an engine with --batch "
                         "min,opt,max)")
    hw = slice(1, 3) if expected[-1] == 3 else slice(2, 4)  # uint8 HxWx3 frames (export --frame), else 3xHxW
    raise ValueError(f"input {_dims(shape[hw])} (HxW): this model takes a fixed {_dims(expected[hw])} input; "
                     "leave Detector.detect's imgsz out, or export the model again at that size (its size is set "
                     "at export: --dynamic makes only the batch dynamic)")
