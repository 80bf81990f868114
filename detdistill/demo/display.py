"""Whether the demo can open a window here, and if not, why (OpenCV without a GUI, no display, or one that cannot
be reached). Torch-free."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import cv2

# creates and drops a window in a child process (no event loop runs, so it is never drawn): Qt aborts the whole
# process there when it cannot reach the display
WINDOW_PROBE = "import cv2; cv2.namedWindow('detdistill'); cv2.destroyAllWindows()"


def display_problem() -> str | None:
    """Why no window can be opened here, or ``None`` when one can: OpenCV built without a GUI, no X/Wayland display
    (Linux), or a ``DISPLAY``/``WAYLAND_DISPLAY`` that is set but cannot be reached (a stale SSH forward, a container
    without access to the host's X server, a missing Qt platform library), which a window probe in a child process
    finds; the first line of its stderr says why."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), flags=re.MULTILINE)
    if match and match.group(1).upper() == "NONE":
        return "OpenCV here has no GUI (e.g. opencv-python-headless)"
    if not sys.platform.startswith("linux"):
        return None
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not display:
        return "no display (DISPLAY unset)"
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a process the probe starts cannot hold it open
        try:
            code = subprocess.run([sys.executable, "-c", WINDOW_PROBE], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, timeout=30).returncode
        except subprocess.TimeoutExpired:
            return f"display {display} is set but no window opened there within 30 s"
        except OSError:  # no Python to run the probe with (a frozen build): let OpenCV try
            return None
        err.seek(0)
        lines = [line.strip() for line in err.read().decode(errors="replace").splitlines() if line.strip()]
    if code != 0:
        why = f" ({lines[0][:200]})" if lines else ""  # Qt's first line names the cause, its last the plugins
        return f"display {display} is set but no window opens there{why}: an X server that is gone, or one not " \
               "shared with this user or container (xhost +local:, or ssh -X again)"
    return None
