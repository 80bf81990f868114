"""``python -m detdistill``: the ``detdistill`` command."""

from detdistill.cli import app

if __name__ == "__main__":
    app()
