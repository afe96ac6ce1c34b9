"""What a caller catches: the service's errors as typed exceptions with its `code` and
`message`, and the retry decisions behind them."""

from __future__ import annotations

import httpx
import pytest
from deadweight_client import (
    ApiError,
    BadRequest,
    Client,
    Conflict,
    DeadweightError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
)
from deadweight_client.calls import Call, submit
from deadweight_client.retry import Attempts

from tests.client.conftest import FAST_RETRY, Service
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def test_an_unknown_id_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as caught:
        client.job("0123456789abcdef")
    error = caught.value
    assert (error.status, error.code) == (404, "not_found")
    assert "0123456789abcdef" in error.message
    assert isinstance(error, ApiError) and isinstance(error, DeadweightError)


def test_a_refused_job_is_a_bad_request_that_says_why(
    client: Client, uploaded: tuple[str, str]
) -> None:
    model, data = uploaded
    with pytest.raises(BadRequest) as caught:
        client.submit(model, data, thresholds=[{"fraction": 1.5}])
    assert caught.value.status == 422
    assert caught.value.code and "thresholds" in caught.value.message
    with pytest.raises(BadRequest) as unknown:
        client.submit(model, data, no_such_option=True)  # passed through; the server decides
    assert "no_such_option" in unknown.value.message


def test_results_of_an_unfinished_job_are_a_conflict(
    client: Client, uploaded: tuple[str, str]
) -> None:
    job = client.submit(*uploaded, thresholds="f0.4")
    job.cancel()
    with pytest.raises(Conflict) as caught:
        job.results()
    assert caught.value.code == "not_ready"
    assert job.id in caught.value.message


def test_a_wrong_api_key_is_unauthorized(service: Service) -> None:
    with Client(service.url, "not-the-key") as stranger, pytest.raises(Unauthorized) as caught:
        stranger.list_jobs()
    assert caught.value.status == 401


def test_no_service_is_unreachable_after_the_retries() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with Client(closed, retry=FAST_RETRY) as client, pytest.raises(ServiceUnreachable) as caught:
        client.list_jobs()
    assert caught.value.code == "unreachable"
    assert "4 attempts" in caught.value.message  # 1 + FAST_RETRY.retries


def test_a_missing_file_is_refused_before_any_request(client: Client) -> None:
    with pytest.raises(FileNotFoundError):
        client.upload_dataset("no/such/data.npz")


# -- the retry decisions, on real responses --------------------------------------------------
def _response(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error": {"code": code, "message": f"{code} for a while"}}
    return httpx.Response(status, json=body, headers=headers)


def test_503_and_429_are_retried_after_retry_after_then_raised() -> None:
    attempts = Attempts(Call("GET", "/v1/jobs"), RetryPolicy(retries=2))
    assert 5 <= (attempts.after_response(_response(503, "store_unavailable", "5")) or 0) <= 6
    assert 0 < (attempts.after_response(_response(429, "too_many_requests")) or 0) <= 1.0
    last = _response(503, "store_unavailable", "5")
    assert attempts.after_response(last) is None  # retries spent: this is the answer
    with pytest.raises(Unavailable) as caught:
        attempts.raise_for_answer(last)
    assert (caught.value.code, caught.value.retry_after) == ("store_unavailable", 5.0)
    assert isinstance(ApiError.of(_response(429, "too_many_requests")), RateLimited)


def test_only_a_submission_waits_for_the_models_inspection() -> None:
    not_ready = _response(409, "model_not_ready", "2")
    assert Attempts(submit({}, None), RetryPolicy()).after_response(not_ready) == 2.0
    assert Attempts(Call("GET", "/v1/jobs/x"), RetryPolicy()).after_response(not_ready) is None
    key_in_use = _response(409, "idempotency_key_in_use", "1")
    assert Attempts(submit({}, None), RetryPolicy()).after_response(key_in_use) == 1.0
    timed_out = Attempts(submit({}, None), RetryPolicy(busy_timeout=0))
    assert timed_out.after_response(not_ready) is None


def test_an_error_that_is_not_the_envelope_keeps_its_status() -> None:
    error = ApiError.of(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert (error.status, error.code) == (502, "http_502") and "Bad gateway" in error.message
