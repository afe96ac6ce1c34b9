"""The worker's protocol with its engine process: every request and message survives the
wire, and a line that is not one of them is refused."""

from __future__ import annotations

import json

import pytest

from jobs.job_config import JobConfig
from worker.protocol import (
    DatasetSpec,
    DiskFullMessage,
    EngineMessage,
    EngineRequest,
    FileTooLargeMessage,
    IncidentMessage,
    InspectRequest,
    JobRequest,
    ProgressMessage,
    ProtocolError,
    PruneRequest,
    RefusalMessage,
    ResultMessage,
    SelfCheckRequest,
    decode_message,
    decode_request,
    encode,
)

DATA = DatasetSpec(path="/d/blobs/ab", format="npz", label_column=None, name="data.npz")
SWEEP = {
    "model": "/d/blobs/cd",
    "data": DATA,
    "config": JobConfig.from_json({"criterion": "variance", "thresholds": [{"fraction": 0.5}]}),
    "batch_size": 32,
    "device": "cpu",
    "out_dir": "/d/jobs/.j.attempt-1",
}

REQUESTS: list[EngineRequest] = [
    InspectRequest(model="/d/blobs/cd", max_parameters=10**6),
    JobRequest(**SWEEP, eval_data=DatasetSpec(path="/d/e.csv", format="csv", label_column="y")),
    PruneRequest(**SWEEP, stack_on_crash=False),
    SelfCheckRequest(),
]
MESSAGES: list[EngineMessage] = [
    ProgressMessage(stage="statistics", fraction=0.25),
    ResultMessage(value={"layers": [{"name": "fc1", "width": 16}]}),
    ResultMessage(value=None),
    RefusalMessage(reason="metric 'accuracy' needs labels (y) in the evaluation data"),
    DiskFullMessage(reason="no space left on the device"),
    FileTooLargeMessage(reason="a file grew past the output limit"),
    IncidentMessage(incident="0123456789ab", detail="TypeError: bogus"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.kind)
def test_every_request_survives_the_wire(request_: EngineRequest) -> None:
    wire = encode(request_)
    assert json.loads(wire)["kind"] == request_.kind
    assert decode_request(wire) == request_


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.kind)
def test_every_message_survives_the_wire(message: EngineMessage) -> None:
    wire = encode(message)
    assert "\n" not in wire and json.loads(wire)["kind"] == message.kind
    assert decode_message(wire.encode()) == message


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"kind": "no such kind"}', "unknown kind 'no such kind'"),
        ('{"stage": "x", "fraction": 1}', "unknown kind None"),
        ('{"kind": "progress", "stage": "x"}', "ProgressMessage: .*fraction"),
        ('{"kind": "result", "value": 1, "extra": 2}', "ResultMessage: .*extra"),
        ('["progress", "x", 1]', "expected a JSON object, got list"),
        ("not json", "not JSON"),
    ],
)
def test_a_line_that_is_no_message_is_refused(line: str, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        decode_message(line)


def test_a_request_of_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown kind 'progress'"):
        decode_request(encode(ProgressMessage(stage="x", fraction=0.0)))


def test_a_job_travels_in_the_form_its_row_stores_and_an_unknown_value_is_refused() -> None:
    request = JobRequest(**SWEEP)
    assert json.loads(encode(request))["config"] == request.config.to_json()
    wire = json.loads(encode(request))
    wire["config"]["criterion"] = "loudest"
    with pytest.raises(ProtocolError, match=r"config: .*loudest"):
        decode_request(json.dumps(wire))
