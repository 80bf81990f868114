"""Video encoders of ``--record`` and ``--stream``: which one runs, and its GStreamer writer pipeline.

``--encoder auto`` records with the Jetson hardware encoder (``nvv4l2h264enc``) when OpenCV has
GStreamer and every element of the pipeline exists, else with OpenCV's own writer (MPEG-4 / MJPEG);
it streams with ``nvv4l2h264enc``, else ``x264enc``. An encoder asked for by name that cannot run
is refused before the run (:class:`EncoderError`, naming the element and the package to install).

A GStreamer writer is an OpenCV ``VideoWriter`` opened on a pipeline string that starts at
``appsrc`` (OpenCV feeds it BGR frames and sets the frame rate on its caps)::

    appsrc ! BGR caps ! videoconvert ! BGRx ! nvvidconv ! NVMM NV12 ! nvv4l2h26Xenc ! parse ! mux ! filesink
    appsrc ! BGR caps ! videoconvert ! I420 ! x264enc ! h264parse ! mux ! filesink
    ... ! h264parse ! rtph264pay config-interval=1 pt=96 ! udpsink host=H port=P     (--stream udp://H:P)
    ... ! h264parse ! rtspclientsink location=rtsp://...                             (--stream rtsp://...)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import gstreamer as gst

ENCODERS = ("auto", "nvv4l2h264enc", "nvv4l2h265enc", "x264enc", "opencv")
GST_ENCODERS = ("nvv4l2h264enc", "nvv4l2h265enc", "x264enc")
CODEC = {"nvv4l2h264enc": "h264", "nvv4l2h265enc": "h265", "x264enc": "h264"}
HARDWARE = {"nvv4l2h264enc", "nvv4l2h265enc"}
MUX_BY_SUFFIX = {".mp4": "mp4mux", ".m4v": "mp4mux", ".mov": "qtmux", ".mkv": "matroskamux", ".avi": "avimux"}
RTP_PAYLOAD = 96
MIN_BITRATE = 1_000_000      # bits/s
BITS_PER_PIXEL = 0.1         # default bitrate: this many bits per pixel per frame

# where a missing element comes from (Ubuntu / JetPack package names)
PACKAGE_OF = {
    "nvvidconv": "nvidia-l4t-gstreamer (JetPack)", "nvv4l2h264enc": "nvidia-l4t-gstreamer (JetPack)",
    "nvv4l2h265enc": "nvidia-l4t-gstreamer (JetPack)", "x264enc": "gstreamer1.0-plugins-ugly",
    "h264parse": "gstreamer1.0-plugins-bad", "h265parse": "gstreamer1.0-plugins-bad",
    "rtspclientsink": "gstreamer1.0-rtsp", "appsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
}
GOOD_PLUGINS = "gstreamer1.0-plugins-good"   # the muxers, RTP payloaders, udpsink, filesink's neighbours


class EncoderError(ValueError):
    """An encoder or stream that cannot run here (raised before the run starts)."""


@dataclass(frozen=True)
class StreamTarget:
    """Where ``--stream`` sends the annotated video: RTP over UDP, or pushed to an RTSP server."""

    scheme: str        # "udp" or "rtsp"
    host: str
    port: int
    path: str = ""     # rtsp only, e.g. "/demo"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"

    def for_source(self, index: int) -> "StreamTarget":
        """Source ``index`` of several: UDP port + index, RTSP path + ``-index``."""
        if self.scheme == "udp":
            return replace(self, port=self.port + index)
        return replace(self, path=f"{self.path or '/demo'}-{index}")


@dataclass(frozen=True)
class VideoPlan:
    """The encoders chosen for a run (``fallback``: what to use when the first one does not open)."""

    record_encoder: str = "opencv"
    record_fallback: str | None = None
    stream: StreamTarget | None = None
    stream_encoder: str | None = None
    stream_fallback: str | None = None
    bitrate: int = 0   # bits/s; 0 = from the frame size (default_bitrate)


def parse_stream(url: str) -> StreamTarget:
    """``udp://HOST:PORT`` or ``rtsp://HOST[:PORT]/PATH`` (the RTSP server's address and mount path)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("udp", "rtsp"):
        raise EncoderError(f"--stream {url!r}: use udp://HOST:PORT (RTP over UDP to the watching machine) or "
                           "rtsp://SERVER:PORT/PATH (pushed to an RTSP server such as mediamtx)")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or (scheme == "udp" and not port):
        raise EncoderError(f"--stream {url!r}: give the host and port, e.g. udp://192.168.1.20:5000")
    return StreamTarget(scheme, parts.hostname, port or 8554, parts.path if scheme == "rtsp" else "")


def stream_targets(url: str | StreamTarget, count: int) -> list[StreamTarget]:
    """One target for one source; PORT, PORT+1, ... (or PATH-0, PATH-1, ...) for several."""
    target = parse_stream(url) if isinstance(url, str) else url
    return [target] if count == 1 else [target.for_source(i) for i in range(count)]


def default_bitrate(width: int, height: int, fps: float) -> int:
    """Bits per second for a frame size and rate (0.1 bit per pixel per frame, at least 1 Mbit/s)."""
    return max(MIN_BITRATE, int(round(BITS_PER_PIXEL * width * height * (fps or 30.0), -5)))


def _encode_chain(encoder: str, width: int, height: int, fps: float, bitrate: int) -> list[str]:
    """``appsrc`` up to and including the encoder's parser."""
    if encoder not in GST_ENCODERS:
        raise ValueError(f"{encoder!r} is not a GStreamer encoder ({', '.join(GST_ENCODERS)})")
    bitrate = bitrate or default_bitrate(width, height, fps)
    gop = max(1, round(fps or 30.0))             # a key frame every second
    chain = ["appsrc", f"video/x-raw,format=BGR,width={width},height={height}", "videoconvert"]
    if encoder in HARDWARE:
        chain += ["video/x-raw,format=BGRx", "nvvidconv", "video/x-raw(memory:NVMM),format=NV12",
                  f"{encoder} bitrate={bitrate} iframeinterval={gop} idrinterval={gop} insert-sps-pps=true"]
    else:
        chain += ["video/x-raw,format=I420",
                  f"x264enc bitrate={max(1, bitrate // 1000)} speed-preset=ultrafast tune=zerolatency "
                  f"key-int-max={gop}"]
    return chain + [f"{CODEC[encoder]}parse"]


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def video_suffix(path: str | Path) -> str:
    """The lower-case suffix of a recording path; :class:`EncoderError` for one that no writer records
    (the GStreamer muxers and OpenCV's fourccs cover the same suffixes)."""
    suffix = Path(path).suffix.lower()
    if suffix not in MUX_BY_SUFFIX:
        raise EncoderError(f"--record: use one of {', '.join(sorted(MUX_BY_SUFFIX))}, not {Path(path).name!r}")
    return suffix


def file_pipeline(path: str | Path, encoder: str, width: int, height: int, fps: float, bitrate: int = 0) -> str:
    """GStreamer writer pipeline recording to ``path``; the muxer follows its suffix."""
    suffix = video_suffix(path)
    chain = _encode_chain(encoder, width, height, fps, bitrate)
    return " ! ".join(chain + [MUX_BY_SUFFIX[suffix], f"filesink location={_quoted(str(path))}"])


def stream_pipeline(target: StreamTarget, encoder: str, width: int, height: int, fps: float,
                    bitrate: int = 0) -> str:
    """GStreamer writer pipeline sending to ``target`` (RTP/UDP, or an RTSP server via ``rtspclientsink``)."""
    chain = _encode_chain(encoder, width, height, fps, bitrate)
    if target.scheme == "udp":
        chain += [f"rtp{CODEC[encoder]}pay config-interval=1 pt={RTP_PAYLOAD}",
                  f"udpsink host={target.host} port={target.port} sync=false async=false"]
    else:
        chain += [f"rtspclientsink location={target.url} protocols=tcp"]
    return " ! ".join(chain)


def pipeline_elements(pipeline: str) -> list[str]:
    """The element (factory) names of a pipeline string, in order; caps filters are skipped."""
    names = []
    for piece in pipeline.split(" ! "):
        first = shlex.split(piece)[0]
        if "/" not in first and "=" not in first:
            names.append(first)
    return names


def missing_elements(pipeline: str) -> list[str]:
    """Elements of ``pipeline`` that this GStreamer lacks (``gst-inspect-1.0 --exists``)."""
    return [name for name in pipeline_elements(pipeline) if not gst.gst_has_element(name)]


def _install_hint(missing: list[str]) -> str:
    packages = sorted({PACKAGE_OF.get(name, GOOD_PLUGINS) for name in missing})
    return "install " + ", ".join(packages)


def _sample(encoder: str, record: Path | None, stream: StreamTarget | None) -> str:
    """A pipeline of the run's kind, to probe for its elements (the frame size does not matter)."""
    if record is not None:
        return file_pipeline(record, encoder, 640, 480, 30.0)
    assert stream is not None
    return stream_pipeline(stream, encoder, 640, 480, 30.0)


def _usable(encoder: str, record: Path | None, stream: StreamTarget | None) -> bool:
    return gst.opencv_has_gstreamer() and not missing_elements(_sample(encoder, record, stream))


def _require(encoder: str, record: Path | None, stream: StreamTarget | None, what: str, auto: bool = False) -> None:
    """Raise ``EncoderError`` unless ``encoder`` can run the ``what`` pipeline here."""
    if not gst.opencv_has_gstreamer():
        alternative = "; or record with --encoder opencv" if record is not None else ""
        using = "a GStreamer encoder" if auto else encoder
        raise EncoderError(
            f"{what} with {using} needs OpenCV built with GStreamer, and this OpenCV has none "
            "(python3 -c \"import cv2; print(cv2.getBuildInformation())\" | grep GStreamer). On a Jetson use "
            "JetPack's OpenCV: pip uninstall opencv-python opencv-python-headless in the venv (see "
            "deploy/jetson/README.md); elsewhere an OpenCV built with -D WITH_GSTREAMER=ON"
            f"{alternative}")
    missing = missing_elements(_sample(encoder, record, stream))
    if missing:
        names = ", ".join(missing)
        jetson = " (the Jetson's hardware encoder: JetPack only)" if set(missing) & (HARDWARE | {"nvvidconv"}) else ""
        if auto:
            raise EncoderError(f"{what}: no encoder can stream here (nvv4l2h264enc is the Jetson's, and for "
                               f"x264enc GStreamer has no {names}); {_install_hint(missing)} "
                               f"(check with gst-inspect-1.0 {missing[0]})")
        alternative = "or record with --encoder opencv" if record is not None else "or stream with --encoder x264enc"
        raise EncoderError(f"{what} with {encoder}: GStreamer has no {names}{jetson}; {_install_hint(missing)} "
                           f"(check with gst-inspect-1.0 {missing[0]}), {alternative}")


def choose_encoder(requested: str, *, record: str | Path | None = None,
                   stream: StreamTarget | None = None) -> tuple[str, str | None]:
    """``(encoder, fallback)`` for a recording to ``record`` or a stream to ``stream`` (one of the two).

    ``fallback`` is the encoder to use when the chosen one's writer does not open (``auto`` only).
    """
    if requested not in ENCODERS:
        raise EncoderError(f"--encoder {requested!r}: use one of {', '.join(ENCODERS)}")
    path = Path(record) if record is not None else None
    what = f"--record {path}" if path is not None else f"--stream {stream.url if stream else ''}"
    if path is not None:
        video_suffix(path)
    if requested == "opencv":
        if path is None:
            raise EncoderError(f"{what}: streaming needs a GStreamer encoder (--encoder auto, nvv4l2h264enc, "
                               "nvv4l2h265enc or x264enc); OpenCV's own writer only writes files")
        return "opencv", None
    if requested != "auto":
        _require(requested, path, stream, what)
        return requested, None
    if path is not None:
        if _usable("nvv4l2h264enc", path, stream):
            return "nvv4l2h264enc", "opencv"
        return "opencv", None
    candidates = [e for e in ("nvv4l2h264enc", "x264enc") if _usable(e, path, stream)]
    if not candidates:
        _require("x264enc", path, stream, what, auto=True)   # raises, naming what is missing
    return candidates[0], candidates[1] if len(candidates) > 1 else None


def plan_video(record: str | Path | None, stream: str | None, encoder: str = "auto",
               bitrate_mbps: float = 0.0) -> VideoPlan:
    """Choose the recording and stream encoders of a run; ``EncoderError`` when one cannot run."""
    if encoder not in ENCODERS:
        raise EncoderError(f"--encoder {encoder!r}: use one of {', '.join(ENCODERS)}")
    if bitrate_mbps < 0:
        raise EncoderError(f"--bitrate {bitrate_mbps}: give Mbit/s above 0 (0 = from the frame size)")
    given = [o for o, on in ((f"--encoder {encoder}", encoder != "auto"), (f"--bitrate {bitrate_mbps:g}", bitrate_mbps))
             if on]
    if given and not record and not stream:
        raise EncoderError(f"{' and '.join(given)} set how --record and --stream encode, and neither is given: add "
                           "--record out.mp4 or --stream udp://HOST:PORT, or drop them")
    if encoder == "opencv" and bitrate_mbps:
        raise EncoderError(f"--bitrate {bitrate_mbps:g}: OpenCV's writer (--encoder opencv) takes no bitrate; drop "
                           "--bitrate, or record with a GStreamer encoder (x264enc, nvv4l2h264enc)")
    plan = VideoPlan(bitrate=int(round(bitrate_mbps * 1e6)))
    if record:
        chosen, fallback = choose_encoder(encoder, record=record)
        plan = replace(plan, record_encoder=chosen, record_fallback=fallback)
    if stream:
        target = parse_stream(stream)
        chosen, fallback = choose_encoder(encoder, stream=target)
        plan = replace(plan, stream=target, stream_encoder=chosen, stream_fallback=fallback)
    return plan


def describe(encoder: str, bitrate: int | None = None) -> str:
    """``nvv4l2h264enc (Jetson hardware H.264, 2.8 Mbit/s)``, ``opencv (OpenCV's writer, software)``, ..."""
    if encoder == "opencv":
        return "opencv (OpenCV's writer, software)"
    kind = "Jetson hardware" if encoder in HARDWARE else "GStreamer software"
    rate = f", {bitrate / 1e6:.1f} Mbit/s" if bitrate else ""
    codec = {"h264": "H.264", "h265": "H.265"}[CODEC[encoder]]
    return f"{encoder} ({kind} {codec}{rate})"


def receiver_command(target: StreamTarget, codec: str = "h264") -> str:
    """A ``gst-launch-1.0`` line that shows a UDP stream on the watching machine."""
    caps = (f"application/x-rtp,media=video,clock-rate=90000,encoding-name={codec.upper()},"
            f"payload={RTP_PAYLOAD}")
    return (f"gst-launch-1.0 udpsrc port={target.port} caps=\"{caps}\" ! rtp{codec}depay ! {codec}parse ! "
            f"avdec_{codec} ! videoconvert ! autovideosink sync=false")

