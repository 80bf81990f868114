"""Where an exported artifact is written: never over its own input, always with the format's suffix."""

from __future__ import annotations

from pathlib import Path


def checked_output(src: Path, output: Path, suffix: str | tuple[str, ...]) -> Path:
    """``output``, refused (ValueError naming the fix) when it is the input file itself, a folder, or lacks ``suffix``
    (one of them, when several are given; the first is the one suggested).

    Checked before any work starts, so a mistyped ``-o`` loses neither the input nor the time.
    """
    output = Path(output)
    suffixes = (suffix,) if isinstance(suffix, str) else suffix
    suffix = suffixes[0]
    if output.exists() and output.resolve() == Path(src).resolve():
        raise ValueError(f"output {output} would overwrite the input; pass another -o path")
    if output.is_dir():
        raise ValueError(f"output {output} is a folder; pass a file path such as {output / (Path(src).stem + suffix)}")
    if output.suffix.lower() not in suffixes:
        raise ValueError(f"output {output} should end in {' or '.join(suffixes)}; pass a path such as "
                         f"{output.with_suffix(suffix)}")
    return output
