"""The README's first command, `detdistill quickstart`, in its tiny variant."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from detdistill.cli import app

pytestmark = pytest.mark.slow


def test_quickstart_command_runs_every_stage_and_prints_the_report(tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--tiny", "--workdir", str(tmp_path / "qs")])
    assert result.exit_code == 0, result.output
    for stage in ("data", "teacher", "train student without KD", "distill student (default)",
                  "quantize to INT8", "demo (headless"):
        assert f"| {stage}" in result.output and "| ran |" in result.output
    assert (tmp_path / "qs" / "report.html").stat().st_size > 10_000  # tables and inline plots
    for artifact in ("teacher (FP32 ONNX)", "student, KD (FP32 ONNX)", "student, KD (INT8 ONNX, cpu)"):
        assert f"| {artifact} |" in result.output
