"""The one way every ``detdistill`` verb reports bad input: a one-line message, exit code 2."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> None:
    """Print ``error: <message>`` (naming the problem and the fix) to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
