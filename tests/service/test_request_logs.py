"""Request IDs and the JSON log lines of a request (jobs.logging_setup, service.request_ids)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from jobs.logging_setup import log_fields
from tests.log_capture import captured_json_log
from tests.service.api_helpers import ClientFactory, new_dataset, new_model

KEY = "acme-key-7d1f0b"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with captured_json_log() as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_sane_request_id_is_kept_and_any_other_replaced(make_client: ClientFactory) -> None:
    client = make_client()
    assert (
        client.get("/healthz", headers={"X-Request-ID": "lb-42:a.b_c"}).headers["x-request-id"]
        == "lb-42:a.b_c"
    )
    for bad in ("two words", "x" * 129, "new\\nline", "a/b", "{json}"):
        given = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert given != bad and len(given) == 32
    first, second = (client.get("/nowhere").headers["x-request-id"] for _ in range(2))
    assert first != second  # a fresh one per request, errors included


def test_a_request_s_lines_carry_its_id_tenant_and_job_and_never_the_key(
    make_client: ClientFactory, model_bytes: bytes, json_log: io.StringIO
) -> None:
    client = make_client(api_keys=f"acme={KEY}")
    client.headers["Authorization"] = f"Bearer {KEY}"
    body = {
        "model_id": new_model(client, model_bytes)["id"],
        "dataset_id": new_dataset(client)["id"],
        "thresholds": [{"fraction": 0.5}],
    }
    response = client.post("/v1/jobs", json=body, headers={"X-Request-ID": "req-1"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    (queued,) = [line for line in lines(json_log) if line.get("job_id") == job_id]
    assert queued["request_id"] == "req-1" and queued["tenant"] == "acme"
    assert queued["logger"] == "service.submission" and queued["level"] == "INFO"
    assert KEY not in json_log.getvalue()


def test_the_schema_masks_credentials_and_keeps_tracebacks_on_one_line(
    json_log: io.StringIO,
) -> None:
    log = logging.getLogger("deadweight.test")
    with log_fields(job_id="j1", attempt=2):
        log.warning("sent Authorization: Bearer abc123 with whsec_c2VjcmV0 in it")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("outside")
    masked, failed, outside = lines(json_log)
    assert masked["msg"] == "sent Authorization: Bearer [masked] with [masked] in it"
    assert (masked["job_id"], masked["attempt"], masked["level"]) == ("j1", 2, "WARNING")
    assert "ValueError: boom" in failed["exc"] and failed["job_id"] == "j1"
    assert "job_id" not in outside and set(outside) == {"ts", "level", "logger", "msg"}
