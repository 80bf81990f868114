"""Where an exported artifact is written: never over its own input, always with the format's suffix."""

from __future__ import annotations

from pathlib import Path


def checked_output(src: Path, output: Path, suffix: str) -> Path:
    """``output``, refused (ValueError naming the fix) when it is the input file itself, a folder, or lacks ``suffix``.

    Checked before any work starts, so a mistyped ``-o`` loses neither the input nor the time.
    """
    output = Path(output)
    if output.exists() and output.resolve() == Path(src).resolve():
        raise ValueError(f"output {output} would overwrite the input; pass another -o path")
    if output.is_dir():
        raise ValueError(f"output {output} is a folder; pass a file path such as {output / (Path(src).stem + suffix)}")
    if output.suffix.lower() != suffix:
        raise ValueError(f"output {output} should end in {suffix}; pass a path such as {output.with_suffix(suffix)}")
    return output
