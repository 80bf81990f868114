"""Artifact records: their labels name the stages of existing work folders, so they must stay what they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from detdistill.pipeline.artifacts import Artifact, final_student

PT = Path("/w/student-kd/weights/best.pt")


def _pt(role: str, **kw) -> Artifact:
    return Artifact(role, "pt", Path(f"/w/{role}.pt"), Path(f"/w/{role}.pt"), 128, **kw)


@pytest.mark.parametrize("artifact, label, stem", [
    (_pt("teacher").exported(Path("/w/a/teacher.onnx")), "teacher (FP32 ONNX)", "teacher"),
    (_pt("student").exported(Path("/w/a/s.onnx")), "student, no KD (FP32 ONNX)", "student-no-KD"),
    (_pt("student_kd").exported(Path("/w/a/k.onnx")), "student, KD (FP32 ONNX)", "student-KD"),
    (_pt("student_kd", precision="int8", method="qad").exported(Path("/w/a/q.onnx")),
     "student, QAD (INT8 Q/DQ ONNX)", "student-QAD"),
    (_pt("student_kd").exported(Path("/w/a/k-int8.onnx"), precision="int8", method="ptq", target="tensorrt"),
     "student, KD (INT8 ONNX, tensorrt)", "student-KD"),
    (_pt("student").exported(Path("/w/a/s-fp16.engine"), precision="fp16", target="tensorrt"),
     "student, no KD (FP16 TensorRT)", "student-no-KD"),
])
def test_labels_and_file_names_are_the_ones_work_folders_recorded(artifact, label, stem):
    assert (artifact.label, artifact.file_stem) == (label, stem)
    assert artifact.source == Path(f"/w/{artifact.role}.pt") and artifact.imgsz == 128  # kept through exports


def test_exported_records_their_format_and_only_the_teacher_is_the_teacher():
    onnx = _pt("teacher").exported(Path("/w/t.onnx"))
    assert (onnx.format, onnx.is_teacher, _pt("student_kd").is_teacher) == ("onnx", True, False)
    assert _pt("student").exported(Path("/w/s.engine")).format == "engine"


def test_the_final_student_is_the_distilled_one_else_the_one_without_kd():
    teacher, no_kd, kd = _pt("teacher"), _pt("student"), _pt("student_kd")
    qad = _pt("student_kd", precision="int8", method="qad")
    assert final_student([teacher, no_kd, kd, qad]) is kd
    assert final_student([teacher, no_kd, qad]) is no_kd
    with pytest.raises(ValueError, match="no student"):
        final_student([teacher])
