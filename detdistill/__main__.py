"""The ``detdistill`` command's entry point (also ``python -m detdistill``).

It imports the app itself, so that a Ctrl-C while the verbs' packages load ends like one during a verb: a line and
exit status 130, no traceback.
"""

import os
import sys


def main() -> None:
    """Run the ``detdistill`` app."""
    try:
        from detdistill.cli import app  # lazy: here, so that a Ctrl-C while it loads is caught
    except KeyboardInterrupt:
        print("interrupted while starting", file=sys.stderr)
        sys.exit(130)
    except ImportError as e:
        if not _from_opencv(e):
            raise
        # the base install's one outside requirement: the extra brings pip's OpenCV, a Jetson has JetPack's
        if isinstance(e, ModuleNotFoundError):
            print("error: detdistill needs OpenCV (the cv2 module), which this Python cannot import: pip install "
                  "'detdistill[runtime]'; on a Jetson, use JetPack's OpenCV from a venv made with "
                  "--system-site-packages (deploy/jetson/setup.sh makes one)", file=sys.stderr)
        else:  # installed, but a system library it links is missing (libGL in a slim container, say)
            print(f"error: OpenCV (cv2) is installed but does not load ({e}): install the system library it names "
                  "(e.g. apt-get install libgl1), or use pip's opencv-python-headless", file=sys.stderr)
        sys.exit(2)
    app()


def _from_opencv(error: ImportError) -> bool:
    """Whether ``error`` came from importing OpenCV: missing, or one of its native libraries."""
    if error.name == "cv2":
        return True
    tb = error.__traceback__
    while tb is not None:
        if f"{os.sep}cv2{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


if __name__ == "__main__":
    main()
