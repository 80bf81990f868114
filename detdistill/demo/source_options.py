"""The options a ``--source`` takes after ``?`` (after ``#`` for RTSP URLs), per kind of source, and their check.

An unknown name (with the closest known one for a typo) or a value outside what the option takes is refused
with a ``SourceError`` that names the option, its allowed values and an example. http(s) streams take none.
"""

from __future__ import annotations

import difflib

from .capture import SourceError

SIZE, FPS = range(16, 8193), range(1, 1001)
SYNTHETIC_SIZE = range(16, 4097)   # the clip is generated in memory: no 8K frames

# kind -> option name -> (allowed values: a range of integers or the choices, an example value)
OPTIONS: dict[str, dict[str, tuple[range | tuple[str, ...], str]]] = {
    "camera": {"width": (SIZE, "1280"), "height": (SIZE, "720"), "fps": (FPS, "30"),
               "format": (("mjpeg", "mjpg", "jpeg", "raw"), "raw")},
    "csi": {"width": (SIZE, "1920"), "height": (SIZE, "1080"), "fps": (FPS, "30"), "mode": (range(0, 100), "0"),
            "flip": (range(0, 8), "2")},
    "rtsp": {"codec": (("h264", "h265"), "h265"), "latency": (range(0, 60001), "200")},
    "synthetic": {"frames": (range(1, 10**9 + 1), "300"), "fps": (FPS, "30"), "width": (SYNTHETIC_SIZE, "640"),
                  "height": (SYNTHETIC_SIZE, "480")},
}


def describe(allowed: range | tuple[str, ...]) -> str:
    """What an option takes, in words."""
    if isinstance(allowed, range):
        return f"an integer from {allowed.start} to {allowed[-1]}"
    return "one of " + ", ".join(allowed)


def check_options(kind: str, options: dict[str, str], text: str, sep: str = "?") -> dict[str, int | str]:
    """``options`` of a ``kind`` source checked against :data:`OPTIONS`: integers as ``int``, choices in lower
    case. ``text`` is the source as given, for the message."""
    known = OPTIONS[kind]
    checked: dict[str, int | str] = {}
    for name, value in options.items():
        if name not in known:
            close = difflib.get_close_matches(name.lower(), list(known), n=1)
            fix = f"did you mean {close[0]}?" if close else "remove it or use one of them"
            raise SourceError(f"source {text!r}: unknown option {name!r}; the {kind} source takes "
                              f"{', '.join(known)}: {fix}")
        allowed, example = known[name]
        word = value.strip().lower()
        if isinstance(allowed, range) and word.isdecimal() and int(word) in allowed:
            checked[name] = int(word)
        elif not isinstance(allowed, range) and word in allowed:
            checked[name] = word
        else:
            raise SourceError(f"source {text!r}: option {name} must be {describe(allowed)}, got {value!r}; "
                              f"e.g. {text.partition(sep)[0]}{sep}{name}={example}")
    return checked
