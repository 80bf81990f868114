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
    app()


if __name__ == "__main__":
    main()
