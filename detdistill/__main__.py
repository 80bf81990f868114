"""The ``detdistill`` command's entry point (also ``python -m detdistill``).

It imports the app itself, so that a Ctrl-C while the verbs' packages load ends like one during a verb: a line and
exit status 130, no traceback.
"""

import sys


def main() -> None:
    """Run the ``detdistill`` app."""
    try:
        from detdistill.cli import app  # lazy: here, so that a Ctrl-C while it loads is caught
    except KeyboardInterrupt:
        print("interrupted while starting", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as e:
        if e.name != "cv2":
            raise
        # the base install's one outside requirement: the extra brings pip's OpenCV, a Jetson has JetPack's
        print("error: detdistill needs OpenCV (the cv2 module), which this Python cannot import: pip install "
              "'detdistill[runtime]'; on a Jetson, use JetPack's OpenCV from a venv made with --system-site-packages "
              "(deploy/jetson/setup.sh makes one)", file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
