"""The real COCO teacher through both loops on a video of real photos, and the simulated engine
(fixed latency, outputs recorded from that real model) that tools/bench_demo_pipeline.py uses."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from detdistill.demo import run_demo
from detdistill.demo.simulated import Recording, SimulatedBackend
from detdistill.runtime.backends import Backend
from detdistill.runtime.metadata import ModelInfo

FRAMES = 12


class TinyBackend:
    """A real-shaped model of 2 classes on 64x64 inputs: anchor k scores its class by the input's mean."""

    def __init__(self) -> None:
        self.info = ModelInfo(names={0: "a", 1: "b"}, imgsz=(64, 64))
        self.input_shape = (1, 3, 64, 64)
        self.input_dtype = np.float32

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        n = 50
        boxes = np.tile(np.array([32, 32, 10, 10], np.float32)[:, None], (1, n))[None]
        scores = np.zeros((1, 2, n), np.float32)
        scores[0, int(x.mean() > 0.5), :5] = np.linspace(0.9, 0.3, 5)
        return [boxes, scores]


def tiny_recording(count: int = 3) -> tuple[Recording, list[np.ndarray]]:
    inputs = [np.full((1, 3, 64, 64), v, np.float32) for v in np.linspace(0.1, 0.9, count)]
    return Recording.from_backend(TinyBackend(), inputs), inputs


def test_simulated_backend_is_a_backend_with_recorded_outputs(tmp_path):
    recording, inputs = tiny_recording()
    backend = SimulatedBackend(recording, latency_ms=1.0)
    assert isinstance(backend, Backend) and backend.input_shape == (-1, 3, 64, 64)
    out = backend.infer(np.concatenate(inputs))
    real = [TinyBackend().infer(x) for x in inputs]
    assert np.array_equal(out[1], np.concatenate([r[1] for r in real]))
    kept = real[0][1][0].max(0) > recording.min_score
    assert np.array_equal(out[0][0][:, kept], real[0][0][0][:, kept]) and not out[0][0][:, ~kept].any()
    assert backend.misses == 0 and backend.calls == 1 and backend.images == 3
    backend.infer(np.zeros((1, 3, 64, 64), np.float32))           # never recorded: no detections
    assert backend.misses == 1
    loaded = Recording.load(recording.save(tmp_path / "rec.npz"))
    assert loaded.keys == recording.keys and loaded.info.names == recording.info.names
    assert np.array_equal(SimulatedBackend(loaded).infer(inputs[2])[1], real[2][1])


def test_simulated_latency_is_what_it_says():
    recording, inputs = tiny_recording(1)
    backend = SimulatedBackend(recording, latency_ms=4.0, per_image_ms=1.0)
    times = []
    for _ in range(25):
        t0 = time.perf_counter()
        backend.infer(inputs[0])
        times.append((time.perf_counter() - t0) * 1e3)
    assert min(times) >= 4.0  # never faster than the engine it stands for (no upper bound: a busy CPU overshoots)
    t0 = time.perf_counter()
    backend.infer(np.concatenate([inputs[0]] * 3))
    assert (time.perf_counter() - t0) * 1e3 >= 6.0  # 4 ms + 2 extra images x 1 ms
    # it waits as a GPU engine does, without using the CPU: the process's own CPU time hardly moves
    slow = SimulatedBackend(recording, latency_ms=200.0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    slow.infer(inputs[0])
    assert time.perf_counter() - wall0 >= 0.2 and time.process_time() - cpu0 < 0.05


# -- the real teacher on a video of real photos -------------------------------------------------------
@pytest.fixture(scope="module")
def teacher320(teacher_pt, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    from detdistill.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    weights = folder / "teacher.pt"
    shutil.copy(teacher_pt, weights)          # the fixtures folder is read-only; exporters write beside weights
    return Path(export_onnx(weights, folder / "teacher-320.onnx", imgsz=320, dynamic=True))


@pytest.fixture(scope="module")
def photo_video(coco_mini_yaml, tmp_path_factory) -> Path:
    """FRAMES coco-mini val photos, 640x480, as an MPEG-4 video."""
    images = sorted((coco_mini_yaml.parent / "images" / "val").glob("*.jpg"))[:FRAMES]
    path = tmp_path_factory.mktemp("video") / "photos.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30, (640, 480))
    for image in images:
        writer.write(cv2.resize(cv2.imread(str(image)), (640, 480), interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def per_frame(model, source, tmp_path: Path, **kwargs) -> tuple[object, dict[int, list]]:
    """Run the demo; returns the summary and each source's (boxes, scores, class ids) per frame, in order."""
    import json

    results: list[tuple[np.ndarray, ...]] = []
    path = tmp_path / f"d{len(list(tmp_path.iterdir()))}.jsonl"
    summary = run_demo(model, source, show=False, log=lambda m: None, save_json=path,
                       on_frame=lambda i, image, dets: results.append((dets.boxes, dets.scores, dets.class_ids)),
                       **kwargs)
    by_source: dict[int, list] = {}
    for record, result in zip((json.loads(line) for line in path.read_text().splitlines()), results):
        assert record["frame"] == len(by_source.get(record["source"], []))        # in order
        by_source.setdefault(record["source"], []).append(result)
    return summary, by_source


def record_video(detector, video: Path) -> Recording:
    """The real model's outputs for every frame of ``video``, as the simulated engine replays them."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while (ok_frame := cap.read())[0]:
        frames.append(ok_frame[1])
    return Recording.from_backend(detector.backend, [detector.preprocess(f)[0] for f in frames])


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(all(np.array_equal(x, y) for x, y in zip(fa, fb)) for fa, fb in zip(a, b))


def test_pipelined_gives_the_serial_detections_on_a_real_video(teacher320, photo_video, tmp_path):
    serial, ref = per_frame(teacher320, str(photo_video), tmp_path, sync=True)
    piped, got = per_frame(teacher320, str(photo_video), tmp_path)
    assert serial.frames == piped.frames == FRAMES and piped.mode == "pipelined"
    assert sum(len(r[1]) for r in ref[0]) > 2 * FRAMES            # real photos: real detections
    assert same(ref[0], got[0])
    assert piped.stage_ms["preprocess"] > 0 and piped.stage_ms["postprocess"] > 0 and piped.engine_busy > 0.3


def test_simulated_engine_gives_the_real_detections_batched(teacher320, photo_video, tmp_path):
    from detdistill.runtime import Detector

    real = Detector(str(teacher320))
    recording = record_video(real, photo_video)
    _, ref = per_frame(real, str(photo_video), tmp_path, sync=True)
    backend = SimulatedBackend(recording, latency_ms=2.0)
    summary, got = per_frame(Detector(backend), [str(photo_video)] * 2, tmp_path)
    assert backend.misses == 0 and summary.batch == 2.0 and backend.calls == FRAMES
    assert same(ref[0], got[0]) and same(ref[0], got[1])
    assert [s.frames for s in summary.sources] == [FRAMES, FRAMES]


def test_simulated_engine_stands_in_for_a_model_with_frames_in_and_nms_in_the_graph(teacher_pt, photo_video,
                                                                                     tmp_path):
    """A ``--nms --frame`` model: uint8 frames in, fixed top-k out; the stand-in replays it, batched."""
    pytest.importorskip("onnxruntime")
    from detdistill.export.onnx_export import export_onnx
    from detdistill.runtime import Detector

    weights = tmp_path / "teacher.pt"
    shutil.copy(teacher_pt, weights)
    model = export_onnx(weights, tmp_path / "both.onnx", imgsz=320, nms=True, frame=(480, 640))
    real = Detector(str(model))
    recording = record_video(real, photo_video)
    assert recording.input_shape == (480, 640, 3) and recording.input_dtype is np.uint8 and not recording.sparse
    loaded = Recording.load(recording.save(tmp_path / "rec.npz"))
    assert loaded.info.frame == (480, 640) and loaded.info.postprocess == "graph_nms"
    assert loaded.output_dtypes == recording.output_dtypes and loaded.output_names == real.backend.output_names
    _, ref = per_frame(real, str(photo_video), tmp_path, sync=True)
    assert sum(len(r[1]) for r in ref[0]) > 2 * FRAMES
    backend = SimulatedBackend(loaded, latency_ms=2.0)
    summary, got = per_frame(Detector(backend), [str(photo_video)] * 2, tmp_path)
    assert backend.misses == 0 and summary.batch == 2.0
    assert same(ref[0], got[0]) and same(ref[0], got[1])


def test_a_frame_model_runs_a_folder_of_photos_of_mixed_sizes(teacher_pt, coco_mini_yaml, tmp_path):
    """No single --frame fits a folder of photos: each is letterboxed to the model's frame on the host, as eval does."""
    pytest.importorskip("onnxruntime")
    from detdistill.export.onnx_export import export_onnx

    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = set()
    for path in sorted((coco_mini_yaml.parent / "images" / "val").glob("*.jpg"))[:12]:
        sizes.add(cv2.imread(str(path)).shape[:2])
        shutil.copy(path, photos / path.name)
    assert len(sizes) > 1                                                   # mixed sizes, as a photo folder holds
    weights = tmp_path / "teacher.pt"
    shutil.copy(teacher_pt, weights)
    model = export_onnx(weights, tmp_path / "frame.onnx", imgsz=320, frame=(480, 640))
    lines: list[str] = []
    detections: list[int] = []
    summary = run_demo(str(model), str(photos), show=False, log=lines.append,
                       on_frame=lambda i, image, dets: detections.append(len(dets)))
    assert summary.frames == 12 and sum(detections) > 12                     # every photo, real detections
    assert any("each photo not 640x480 is letterboxed to that frame size" in line for line in lines)
    assert any(line.startswith(f"model: {model} on ONNX Runtime CPU FP32 (") for line in lines)  # as eval names it
