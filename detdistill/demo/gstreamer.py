"""GStreamer pipeline strings for Jetson cameras and streams, and capability probes.

Every pipeline ends in ``appsink drop=1 max-buffers=1 sync=false`` so GStreamer keeps only
the newest frame: without it frames queue up and the picture lags seconds behind reality.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

import cv2

APPSINK = "appsink drop=1 max-buffers=1 sync=false"
TO_BGR_FROM_NVMM = "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
TO_BGR = "videoconvert ! video/x-raw,format=BGR"


@functools.lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    """True when the imported OpenCV was built with the GStreamer video backend."""
    info = cv2.getBuildInformation()
    match = re.search(r"^\s*GStreamer:\s*(\S+)", info, flags=re.MULTILINE)
    return bool(match) and match.group(1).upper() != "NO"


@functools.lru_cache(maxsize=64)
def gst_has_element(name: str) -> bool:
    """True when ``gst-inspect-1.0`` knows the element (e.g. ``nvv4l2decoder``)."""
    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return False
    try:
        done = subprocess.run([tool, "--exists", name], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int,
                 sensor_mode: int | None = None, flip: int = 0) -> str:
    """Jetson CSI camera through the Argus daemon (``nvarguscamerasrc``)."""
    mode = f" sensor-mode={sensor_mode}" if sensor_mode is not None else ""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id}{mode} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! {TO_BGR} ! {APPSINK}"
    )


def usb_mjpeg_pipeline(device: str, width: int, height: int, fps: int, decoder: str) -> str:
    """USB camera delivering MJPEG, decoded by ``decoder``.

    ``decoder``: ``nvv4l2decoder`` (Jetson NVDEC/NVJPG, ``mjpd=1``), ``nvjpegdec`` (Jetson
    NVJPG) or ``jpegdec`` (software).
    """
    caps = f"image/jpeg,width={width},height={height},framerate={fps}/1"
    if decoder == "nvv4l2decoder":
        decode = f"nvv4l2decoder mjpd=1 ! {TO_BGR_FROM_NVMM}"
    elif decoder == "nvjpegdec":
        decode = f"nvjpegdec ! video/x-raw,format=I420 ! {TO_BGR}"
    elif decoder == "jpegdec":
        decode = f"jpegdec ! {TO_BGR}"
    else:
        raise ValueError(f"unknown MJPEG decoder {decoder!r}")
    return f"v4l2src device={device} ! {caps} ! {decode} ! {APPSINK}"


def rtsp_pipeline(url: str, codec: str = "h264", latency_ms: int = 200, hardware: bool = True) -> str:
    """RTSP stream over TCP; ``hardware`` picks ``nvv4l2decoder`` over ``avdec_*``."""
    if codec not in ("h264", "h265"):
        raise ValueError(f"codec must be h264 or h265, not {codec!r}")
    depay = f"rtp{codec}depay ! {codec}parse"
    decode = f"nvv4l2decoder ! {TO_BGR_FROM_NVMM}" if hardware else f"avdec_{codec} ! {TO_BGR}"
    return f"rtspsrc location={url} latency={latency_ms} protocols=tcp ! {depay} ! {decode} ! {APPSINK}"
