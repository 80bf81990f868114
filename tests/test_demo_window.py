"""The window path under a virtual X server (Xvfb): the overlay is on screen.

Needs the ``xvfb`` apt package and a Pillow with XCB screen grabbing; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def xvfb_display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install -y xvfb): cannot test the window path")
    features = pytest.importorskip("PIL.features")
    if not features.check("xcb"):
        pytest.skip("Pillow lacks XCB support: cannot take a screenshot")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


DRIVER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from types import SimpleNamespace
    from PIL import ImageGrab
    import cv2
    from detdistill.demo import run_demo

    class Boxes:
        names = {0: "person"}
        last_timings = {"preprocess": 0.1, "inference": 1.0, "postprocess": 0.1}
        def __call__(self, frame):
            return SimpleNamespace(boxes=np.array([[40, 40, 280, 200]], np.float32),
                                   scores=np.array([0.9], np.float32), class_ids=np.array([0]))

    shot = sys.argv[1]
    state = {"done": False}
    def grab(i, image, dets):
        # from frame 10 on, screenshot until the frame is painted (Qt maps and paints lazily);
        # the last attempt is kept for the test to judge
        if i >= 10 and not state["done"]:
            cv2.waitKey(20)
            screen = ImageGrab.grab(xdisplay=os.environ["DISPLAY"])
            screen.save(shot)
            rgb = np.asarray(screen.convert("RGB")).astype(np.int16)
            state["done"] = (np.abs(rgb - [255, 56, 56]).max(axis=2) <= 2).sum() > 500
    summary = run_demo(Boxes(), "synthetic?frames=120&width=320&height=240", show=None, on_frame=grab)
    print("FRAMES", summary.frames)
""")


def _box_pixels(screen: np.ndarray) -> int:
    person_rgb = np.array([255, 56, 56])                 # class 0 colour (BGR 56, 56, 255)
    return int((np.abs(screen.astype(np.int16) - person_rgb).max(axis=2) <= 2).sum())


def test_window_shows_the_overlay(xvfb_display, tmp_path):
    """Qt under a bare Xvfb (no window manager) sometimes maps the window but never paints it
    (about 1 run in 5 here, with plain cv2.imshow too): up to 4 runs are allowed."""
    from PIL import Image

    shot = tmp_path / "screen.png"
    env = {**os.environ, "DISPLAY": xvfb_display, "QT_QPA_PLATFORM": "xcb", "PYTHONPATH": str(ROOT)}
    env.pop("WAYLAND_DISPLAY", None)
    for _attempt in range(4):
        shot.unlink(missing_ok=True)
        done = subprocess.run([sys.executable, "-c", DRIVER, str(shot)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        if shot.exists() and _box_pixels(np.asarray(Image.open(shot).convert("RGB"))) > 500:
            break
    if os.environ.get("DEMO_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["DEMO_KEEP_SCREENSHOT"])

    screen = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    box_pixels = _box_pixels(screen)
    assert box_pixels > 500, f"only {box_pixels} box-coloured pixels on screen"
    rows, cols = np.nonzero((np.abs(screen - np.array([255, 56, 56])).max(axis=2) <= 2))
    # the box is 240 x 160 frame pixels: the coloured pixels span about that on screen
    assert 200 <= cols.max() - cols.min() <= 280 and 130 <= rows.max() - rows.min() <= 200
    white_text = int((screen > 230).all(axis=2)[max(0, rows.min() - 40):rows.min() + 120,
                                                  max(0, cols.min() - 40):cols.min() + 200].sum())
    assert white_text > 50, "no status panel text near the window's top-left corner"


UNREACHABLE = textwrap.dedent("""
    import sys
    import numpy as np
    from types import SimpleNamespace
    from detdistill.demo import run_demo

    class Boxes:
        names = {0: "person"}
        last_timings = {"preprocess": 0.1, "inference": 1.0, "postprocess": 0.1}
        def __call__(self, frame):
            return SimpleNamespace(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                                   class_ids=np.zeros(0, np.int64))

    summary = run_demo(Boxes(), "synthetic?frames=12&width=160&height=120", show=True, record=sys.argv[1],
                       log=lambda line: print("LOG", line, flush=True))
    print("FRAMES", summary.frames)
""")


def test_a_display_that_cannot_be_reached_runs_headless_and_keeps_its_outputs(tmp_path):
    """A DISPLAY left set by an SSH session whose X forward is gone: Qt would abort the whole process (no summary,
    no recording) at the first window; the demo runs headless with a line saying why."""
    import cv2

    if "GUI: NONE" in " ".join(cv2.getBuildInformation().split()):
        pytest.skip("this OpenCV has no GUI: the demo runs headless without probing a display")
    taken = {int(p.name[1:]) for p in Path("/tmp/.X11-unix").glob("X*") if p.name[1:].isdigit()}
    display = f":{max(taken | {90}) + 7}"  # no X server listens there
    env = {**os.environ, "DISPLAY": display, "PYTHONPATH": str(ROOT)}
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run([sys.executable, "-c", UNREACHABLE, str(tmp_path / "out.mp4")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FRAMES 12" in done.stdout and (tmp_path / "out.mp4").stat().st_size > 0
    assert f"display {display} is set but no window opens there (qt.qpa.xcb: could not connect to display" in \
        done.stdout or f"display {display} is set but no window opens there" in done.stdout, done.stdout
