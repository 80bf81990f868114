"""A stand-in inference engine: fixed latency, real outputs recorded from a real model run.

It lets the demo loop be measured at Jetson engine speed on any machine. :class:`Recording`
holds the raw head outputs a real backend gave for a set of inputs, keyed by a fingerprint of
each input; :class:`SimulatedBackend` (a ``detdistill.runtime`` ``Backend``) looks each input
of a batch up, copies its outputs into fresh arrays (like the copy out of a GPU) and sleeps out
the rest of its latency, releasing the GIL as a GPU engine's synchronize does. Wrapped in
``detdistill.runtime.Detector`` it gives the detections of the recorded model exactly.

Any exported model can be recorded: a float ``(3, H, W)`` input or the uint8 ``(H, W, 3)`` frame of a
model with in-graph preprocessing (``--frame``); raw head outputs or the fixed top-k outputs of a model
with in-graph NMS (``--nms``). Of raw head outputs only the anchors whose best class score exceeds
``min_score`` are stored (the rest read as 0): decoding at ``conf >= min_score`` keeps the same boxes
as on the full outputs. The in-graph NMS outputs are small and stored whole.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from detdistill.runtime.metadata import ModelInfo
from detdistill.runtime.postprocess import split_head


def fingerprint(x: np.ndarray) -> bytes:
    """A key for one model input (``(3, H, W)`` or an ``(H, W, 3)`` frame): a hash of every 8th value
    along each axis longer than 8 (every 8th pixel of every 8th row, all channels)."""
    every_8th = tuple(slice(None, None, 8) if n > 8 else slice(None) for n in x.shape)
    return hashlib.blake2b(np.ascontiguousarray(x[every_8th]).tobytes(), digest_size=16).digest()


class Recording:
    """Outputs of a real model for known inputs (raw head outputs sparse: anchors above ``min_score`` only)."""

    def __init__(self, info: ModelInfo, input_shape: tuple[int, ...], output_shapes: list[tuple[int, ...]],
                 min_score: float = 0.01, *, input_dtype: type = np.float32,
                 output_dtypes: list[type] | None = None, output_names: list[str] | None = None) -> None:
        self.info = info
        self.input_shape = tuple(input_shape)   # per image: (3, H, W), or (H, W, 3) for a frame model
        self.input_dtype = np.dtype(input_dtype).type
        self.output_shapes = [tuple(s) for s in output_shapes]   # per image: (channels, anchors) for a raw head
        self.output_dtypes = [np.dtype(t).type for t in output_dtypes or [np.float32] * len(self.output_shapes)]
        self.output_names = list(output_names) if output_names else None
        self.min_score = min_score
        self.sparse = info.postprocess != "graph_nms"   # raw head outputs: keep the scoring anchors only
        # (anchor ids or None for a whole output, values per output)
        self.entries: list[tuple[np.ndarray | None, list[np.ndarray]]] = []
        self.keys: dict[bytes, int] = {}
        self._dense: dict[int, list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, outputs: list[np.ndarray]) -> int:
        """Store one image's outputs (each with a batch axis of 1); returns the entry number."""
        if not self.sparse:
            self.entries.append((None, [np.array(o[0]) for o in outputs]))
            return len(self.entries) - 1
        _, scores = split_head(outputs, len(self.info.names) or None)
        keep = np.flatnonzero(scores[0].max(0) > self.min_score)
        self.entries.append((keep, [np.ascontiguousarray(o[0][:, keep], dtype=np.float32) for o in outputs]))
        return len(self.entries) - 1

    def alias(self, x: np.ndarray, entry: int) -> None:
        """Make input ``x`` (one image, no batch axis) look up ``entry``, unless ``x`` is known already."""
        self.keys.setdefault(fingerprint(x), entry)

    def dense(self, entry: int) -> list[np.ndarray]:
        """Entry ``entry`` as whole outputs of one image (built once, then cached read-only)."""
        with self._lock:
            if entry not in self._dense:
                keep, values = self.entries[entry]
                outs = []
                for shape, dtype, v in zip(self.output_shapes, self.output_dtypes, values):
                    full = np.zeros(shape, dtype)
                    if keep is None:
                        full[...] = v
                    else:
                        full[:, keep] = v
                    full.setflags(write=False)
                    outs.append(full)
                self._dense[entry] = outs
            return self._dense[entry]

    def lookup(self, x: np.ndarray) -> int | None:
        return self.keys.get(fingerprint(x))

    @classmethod
    def from_backend(cls, backend, inputs: Iterable[np.ndarray], min_score: float = 0.01) -> "Recording":
        """Run ``backend`` (a real ``Backend``) on each input (a batch of one) and record it."""
        recording: Recording | None = None
        for x in inputs:
            outputs = [np.asarray(o) for o in backend.infer(x)]
            if recording is None:
                recording = cls(copy.deepcopy(backend.info), x.shape[1:], [o.shape[1:] for o in outputs], min_score,
                                input_dtype=x.dtype, output_dtypes=[o.dtype for o in outputs],
                                output_names=getattr(backend, "output_names", None))
            recording.alias(x[0], recording.add(outputs))
        if recording is None:
            raise ValueError("no inputs to record")
        return recording

    def save(self, path: str | Path) -> Path:
        """Write to ``.npz`` (the model's names/imgsz travel as metadata)."""
        keys = np.frombuffer(b"".join(self.keys), np.uint8).reshape(-1, 16)   # S16 would strip trailing NULs
        arrays = {"keys": keys, "key_entries": np.array(list(self.keys.values()), np.int64)}
        for i, (keep, values) in enumerate(self.entries):
            if keep is not None:
                arrays[f"keep_{i}"] = keep
            for j, v in enumerate(values):
                arrays[f"value_{i}_{j}"] = v
        meta = {"names": self.info.names, "imgsz": list(self.info.imgsz or ()), "letterbox": self.info.letterbox,
                "pad_value": self.info.pad_value, "extra": self.info.extra, "input_shape": list(self.input_shape),
                "input_dtype": np.dtype(self.input_dtype).str, "output_shapes": [list(s) for s in self.output_shapes],
                "output_dtypes": [np.dtype(t).str for t in self.output_dtypes], "output_names": self.output_names,
                "min_score": self.min_score, "entries": len(self.entries)}
        path = Path(path)
        np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            info = ModelInfo(names={int(k): v for k, v in meta["names"].items()},
                             imgsz=tuple(meta["imgsz"]) or None, letterbox=meta["letterbox"],
                             pad_value=meta["pad_value"], extra=meta["extra"])
            recording = cls(info, tuple(meta["input_shape"]), [tuple(s) for s in meta["output_shapes"]],
                            meta["min_score"], input_dtype=np.dtype(meta["input_dtype"]),
                            output_dtypes=[np.dtype(t) for t in meta["output_dtypes"]],
                            output_names=meta["output_names"])
            for i in range(meta["entries"]):
                values = [data[f"value_{i}_{j}"] for j in range(len(recording.output_shapes))]
                recording.entries.append((data[f"keep_{i}"] if recording.sparse else None, values))
            recording.keys = {k.tobytes(): int(e) for k, e in zip(data["keys"], data["key_entries"])}
        return recording


class SimulatedBackend:
    """A ``Backend`` that takes ``latency_ms`` (+ ``per_image_ms`` per extra image) per call.

    ``batch=-1`` gives a dynamic batch axis (several sources are batched), else a fixed batch.
    Inputs it has no recording for get all-zero outputs (no detections) and are counted in
    ``misses``. ``calls``, ``images``, ``busy_s`` (wall) and ``cpu_s`` (CPU time of the lookups
    and copies, the rest is sleep) count what it did.
    """

    def __init__(self, recording: Recording, latency_ms: float = 4.0, *, per_image_ms: float = 0.0,
                 batch: int = -1) -> None:
        self.recording = recording
        self.latency_ms = latency_ms
        self.per_image_ms = per_image_ms
        self.info = copy.deepcopy(recording.info)
        self.input_shape: tuple[int, ...] = (batch, *recording.input_shape)
        self.input_dtype = recording.input_dtype
        self.output_names = recording.output_names
        self.calls = 0
        self.images = 0
        self.misses = 0
        self.busy_s = 0.0
        self.cpu_s = 0.0

    def latency_s(self, batch: int) -> float:
        """How long one call with ``batch`` images takes."""
        return (self.latency_ms + self.per_image_ms * max(0, batch - 1)) / 1e3

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Outputs recorded for each image of the batch ``x``, after the fixed latency."""
        t0, cpu0 = time.perf_counter(), time.thread_time()
        if self.input_shape[0] > 0 and x.shape[0] != self.input_shape[0]:
            raise ValueError(f"this engine takes batch {self.input_shape[0]}, got {x.shape[0]}")
        deadline = t0 + self.latency_s(x.shape[0])
        outs = [np.empty((x.shape[0], *shape), dtype)
                for shape, dtype in zip(self.recording.output_shapes, self.recording.output_dtypes)]
        for b in range(x.shape[0]):
            entry = self.recording.lookup(x[b])
            if entry is None:
                self.misses += 1
                for out in outs:
                    out[b] = 0.0
                continue
            for out, full in zip(outs, self.recording.dense(entry)):
                out[b] = full
        self.cpu_s += time.thread_time() - cpu0
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)
        self.calls += 1
        self.images += x.shape[0]
        self.busy_s += time.perf_counter() - t0
        return outs
