"""Which layers of a model lose most when quantized: the ranking behind ``quantize --max-drop``'s float-layer search,
and its cache (a second search of the same model, images and settings skips the probes)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import atomic
from ..hashing import files_key, settings_key
from ..runtime.cpu import instruction_set
from ..runtime.metadata import ModelInfo
from .calibration import CalibrationReader

SENSITIVITY_IMAGES = 16  # calibration images the per-layer sensitivity probes run on


def sensitivity_cache_path(calibration_cache: Path, probes: Sequence[Path], settings: dict) -> Path:
    """Where the sensitivity ranking is cached: beside the calibration ranges it was built from (whose name holds the
    model, the calibration images, target and method), keyed by the probe images, ``settings`` and this CPU's
    instruction set (the cpu target's probes run its integer kernels, which round differently per CPU)."""
    key = settings_key({**settings, "isa": instruction_set()})
    return calibration_cache.with_name(f"{calibration_cache.stem}-sensitivity-{files_key(probes)}-{key}.json")


def cached_ranking(path: Path, rank: Callable[[], list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """``rank()``'s ranking, read from ``path`` when an earlier search with the same inputs saved it there (a second
    ``--max-drop`` on the same model skips the probes); an unreadable cache is computed again."""
    try:
        return [(str(layer), float(err)) for layer, err in json.loads(path.read_text())["ranking"]]
    except (OSError, ValueError, KeyError, TypeError):
        ranking = rank()
        atomic.write_text(path, json.dumps({"ranking": ranking}))
        return ranking


def rank_sensitivity(src: Path, files: Sequence[Path], build, fixed: Sequence[str], layers: Sequence[str],
                     info: ModelInfo, input_name: str) -> list[tuple[str, float]]:
    """Rank layers by the error that quantizing each one alone adds (largest first).

    Each probe quantizes one layer and leaves every other layer in float; the error is the mean squared
    difference of its class scores to the FP32 model's on ``files``. One-at-a-time probes give a ranking
    that stays put across image sets (the stem convolutions lead on YOLOv8), where probing "all but one
    layer in INT8" drowns each layer's share in the others' error.
    """
    import onnxruntime as ort  # lazy: onnxruntime (tensorrt_build imports quantize, so this module, without it)

    xs = [CalibrationReader([f], info, input_name).get_next() for f in files]

    def scores(path: Path) -> list[np.ndarray]:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [sess.run(["scores"], x)[0] for x in xs]

    ref = scores(src)
    ranked = []
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "probe.onnx"
        for layer in layers:
            build([*fixed, *(g for g in layers if g != layer)], p)  # only `layer` (and what is not a layer) in INT8
            ranked.append((layer, float(np.mean([np.mean((a - b) ** 2) for a, b in zip(scores(p), ref)]))))
    return sorted(ranked, key=lambda t: -t[1])
