"""A job's `formats`: stored only beyond the default, read back, and always with the `.pt2`."""

from __future__ import annotations

import json

import pytest

from jobs.job_config import Criterion, Format, JobConfig


def test_formats_round_trip_and_the_default_is_stored_as_before() -> None:
    onnx = JobConfig(Criterion.RECONSTRUCTION, formats=(Format.PT2, Format.ONNX))
    stored = json.loads(json.dumps(onnx.to_json()))
    assert stored["formats"] == ["pt2", "onnx"]
    assert JobConfig.from_json(stored) == onnx
    # A job that asks for the .pt2 alone is stored as earlier releases stored every job.
    assert "formats" not in JobConfig(Criterion.RECONSTRUCTION).to_json()
    assert JobConfig.from_json({}).formats == (Format.PT2,)


def test_formats_are_ordered_once_each_and_include_pt2() -> None:
    assert Format.parse_all(["onnx", "pt2", "onnx"]) == (Format.PT2, Format.ONNX)
    with pytest.raises(ValueError, match='must include "pt2"'):
        Format.parse_all(["onnx"])
    with pytest.raises(ValueError, match="formats are pt2 and onnx, got 'tflite'"):
        Format.parse_all(["pt2", "tflite"])
