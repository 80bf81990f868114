"""``detdistill demo``: live detection with boxes, FPS and per-stage latency."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..cli_errors import fail, path_parser
from .app import run_demo
from .capture import SourceError
from .recorder import RecordingError

try:
    from typing import Annotated
except ImportError:  # Python 3.8 (JetPack 5); typer depends on typing_extensions
    from typing_extensions import Annotated

HELP = """Run a detector live on a camera, video, stream or image folder.

Shows boxes, class names and scores, FPS and the milliseconds of each stage (capture, preprocess, inference, postprocess, draw, output). Press q or Esc in the window to quit; Ctrl-C works too. Either way the summary is printed and the recording is finalised.

Examples:

  detdistill demo -m student.onnx
      camera 0, or a synthetic clip when there is no camera
  detdistill demo -m student.engine -s csi://0
      Jetson CSI camera (engine built on the device: detdistill build)
  detdistill demo -m student.engine -s /dev/video0 --classes bus,car
  detdistill demo -m student.onnx -s clip.mp4 --no-show --record out.mp4 --save-json dets.jsonl
  detdistill demo -m student.onnx -s "rtsp://cam.local/stream#codec=h265"
  detdistill demo -m student.engine -s csi://0 --no-show --record run.mp4 --stream udp://192.168.1.20:5000
      Jetson: record and stream with the hardware encoder (nvv4l2h264enc)

Source forms:

  0, /dev/video0   USB camera; options ?width=1280&height=720&fps=30&format=mjpeg|raw
  csi://0          Jetson CSI camera (GStreamer nvarguscamerasrc); ?mode=N&flip=N
  rtsp://...       network camera; #codec=h264|h265&latency=200 (http:// via FFmpeg)
  clip.mp4         video file: every frame is processed, the demo ends with the file
  folder/, a.jpg   images in name order
  synthetic        generated clip panning over sample photos; ?frames=300&fps=30&width=640&height=480
                   (exactly this name). A folder or file named 0, 2024 or synthetic: pass ./NAME

Live sources keep only the newest frame (stale frames are dropped and counted) and are reconnected a few times when they fail or stall.

Capture and preprocessing, inference, postprocessing and drawing run as overlapping stages in their own threads, so the next frame is prepared and the last one drawn while the engine works; the summary gives each stage's milliseconds and the engine's busy share. --sync runs them one after another on one thread (for debugging).

Recording and streaming: --encoder auto records with the Jetson's hardware encoder (GStreamer nvv4l2h264enc) where OpenCV has GStreamer and the element exists, else with OpenCV's writer; it streams with nvv4l2h264enc, else x264enc. An encoder named with --encoder that cannot run here stops the demo before it starts, saying what to install. --stream udp://HOST:PORT sends RTP H.264 (payload 96) to HOST, the machine that watches; --stream rtsp://SERVER:8554/PATH pushes to an RTSP server (e.g. mediamtx) that others read from. Both need OpenCV with GStreamer.

Several sources: repeat --source (-s 0 -s csi://0 -s clip.mp4). They share the one model, batched into one engine call when its batch axis is dynamic (detdistill export --dynamic, then detdistill build --batch 1,4,4), and each gets its own window, stats, recording (out-0.mp4, out-1.mp4, ...) and stream (UDP port PORT, PORT+1, ...; RTSP path PATH-0, PATH-1, ...). A source that fails is reported and the others keep running.
"""

MODEL_SUFFIXES = (".onnx", ".engine", ".plan")    # what --backend auto opens (detdistill.runtime.backends)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def _check_model(path: Path, backend: str) -> None:
    """Refuse a model that --backend auto cannot open, in the CLI's words (the runtime's own message names the
    Python argument ``backend=``, which a CLI user cannot pass). A missing file is left to run_demo ("does not
    exist")."""
    suffix = path.suffix.lower()
    if backend != "auto" or suffix in MODEL_SUFFIXES or not path.is_file():
        return
    if suffix in CHECKPOINT_SUFFIXES:
        fail(f"--model {path} is a PyTorch checkpoint, and the demo runs exported models: export it with "
             f"`detdistill export {path}` and pass the .onnx (or build a TensorRT engine from that .onnx on the "
             "device with `detdistill build`)")
    fail(f"--model {path}: cannot tell from its suffix ({suffix or 'none'}) how to run it: pass a .onnx or "
         ".engine file, or add --backend onnxruntime (an ONNX model) or --backend tensorrt (a TensorRT engine)")


def demo(
    model: Annotated[List[Path], typer.Option("--model", "-m", help="Exported model: .onnx (ONNX Runtime) or "
                                              ".engine (TensorRT engine built on this device with `detdistill "
                                              "build`). One per run: every source shares it.")],
    source: Annotated[Optional[List[str]], typer.Option("--source", "-s", help="Camera, file, folder or URL (see "
                                                        "above); repeat it for several sources. Default: camera "
                                                        "0, else the synthetic clip.")] = None,
    conf: Annotated[float, typer.Option(help="Minimum score of a box to show.", min=0.0, max=1.0)] = 0.25,
    iou: Annotated[float, typer.Option(help="IoU threshold of non-maximum suppression.", min=0.0, max=1.0)] = 0.7,
    classes: Annotated[Optional[str], typer.Option(help="Keep only these classes: ids or names, comma "
                                                   "separated, e.g. 'bus,car' or '2,5'.")] = None,
    max_fps: Annotated[float, typer.Option("--max-fps", help="Cap the frame rate (0 = no cap), e.g. to "
                                           "save power.", min=0.0)] = 0.0,
    show: Annotated[Optional[bool], typer.Option("--show/--no-show", help="Open a window (default: when a "
                                                 "display exists). --no-show prints a stats line every "
                                                 "few seconds instead.")] = None,
    record: Annotated[Optional[Path], typer.Option(help="Save the annotated video (.mp4, .avi, .mkv, .mov; see "
                                                  "--encoder); %Y%m%d-%H%M%S codes in the name take the start "
                                                  "time.", metavar="PATH",
                                                  parser=path_parser("--record", "a video file such as out.mp4"))] = None,
    encoder: Annotated[str, typer.Option(help="Video encoder of --record and --stream: auto, nvv4l2h264enc, "
                                         "nvv4l2h265enc (Jetson hardware), x264enc (GStreamer software) or "
                                         "opencv (OpenCV's writer; files only).")] = "auto",
    bitrate: Annotated[float, typer.Option(help="Mbit/s of a GStreamer encoder (0 = from the frame size: 0.1 "
                                           "bit per pixel per frame, at least 1).", min=0.0)] = 0.0,
    stream: Annotated[Optional[str], typer.Option(help="Send the annotated video to udp://HOST:PORT (RTP H.264) "
                                                  "or rtsp://SERVER:PORT/PATH (an RTSP server). Needs OpenCV "
                                                  "with GStreamer.")] = None,
    save_json: Annotated[Optional[Path], typer.Option("--save-json", help="Save detections, one JSON object "
                                                      "per frame per line (JSON Lines, .jsonl); %Y%m%d-%H%M%S "
                                                      "codes in the name take the start time.", metavar="PATH",
                                                      parser=path_parser("--save-json", "a file such as "
                                                                         "dets.jsonl"))] = None,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Stop each source after this many frames "
                                            "(0 = no limit).", min=0)] = 0,
    sync: Annotated[bool, typer.Option("--sync", help="Run the stages one after another on one thread "
                                       "(slower; for debugging) instead of the pipelined loop.")] = False,
    backend: Annotated[str, typer.Option(help="auto (by file suffix), onnxruntime or tensorrt.")] = "auto",
    stats_every: Annotated[float, typer.Option("--stats-every", help="Seconds between stats lines when "
                                               "headless.", min=0.1)] = 5.0,
) -> None:
    if len(model) != 1:
        fail(f"--model given {len(model)} times ({', '.join(str(m) for m in model)}): a run has one model, "
             "shared by all its sources; start one demo per model to compare models")
    _check_model(model[0], backend)
    sources = list(source or []) or None
    try:
        summary = run_demo(model[0], sources, conf=conf, iou=iou, classes=classes, max_fps=max_fps, show=show,
                           record=record, save_json=save_json, sync=sync, backend=backend, encoder=encoder,
                           bitrate=bitrate, stream=stream, max_frames=max_frames,
                           stats_every_s=stats_every, log=lambda m: typer.echo(m, err=False))
    except (SourceError, RecordingError, FileNotFoundError, PermissionError, ValueError) as exc:
        fail(str(exc))
    if summary.error:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``demo`` verb to the ``detdistill`` command."""
    app.command("demo", help=HELP, no_args_is_help=True)(demo)
