"""`--format onnx` on `deadweight prune` and `deadweight submit`: the job's formats, with the
.pt2 always among them. (A real `deadweight prune --format onnx` runs in
tests/service/test_result_schemas.py.)"""

from __future__ import annotations

from jobs.job_config import Format
from service.cli_parser import build_parser
from service.cli_prune import _job_config
from service.cli_submit import job_options


def test_prune_flags_give_the_jobs_formats() -> None:
    parser = build_parser()
    plain = parser.parse_args(["prune", "m.pt2", "d.npz"])
    assert _job_config(plain).formats == (Format.PT2,)
    onnx = parser.parse_args(["prune", "m.pt2", "d.npz", "--format", "onnx"])
    assert _job_config(onnx).formats == (Format.PT2, Format.ONNX)


def test_submit_flags_give_the_bodys_formats() -> None:
    parser = build_parser()
    assert job_options(parser.parse_args(["submit", "m.pt2", "d.npz"]))["formats"] is None
    args = parser.parse_args(["submit", "m", "d", "--format", "onnx", "--format", "pt2"])
    assert job_options(args)["formats"] == ["pt2", "onnx"]
