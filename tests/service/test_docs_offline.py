"""/docs and /redoc render in a real headless Chromium with every other host cut off.

A real `deadweight serve` (tests/service/live_server.py) serves the pages and their assets;
the browser (Debian's `chromium`, driven by Playwright, which downloads no browser of its
own) may reach 127.0.0.1 only: any request to another host is aborted and recorded, and the
test fails if there was one. The pages must then show the API's operations, in open mode and
with API keys, and Swagger UI's "Try it out" must offer the documented example body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.openapi_examples import JOB_CREATE_EXAMPLES
from tests.service.browser import Browser, Page, Watched, chromium, offline_page
from tests.service.live_server import Server, running

KEY = "key-docs-0123456789abcdef"
TIMEOUT_MS = 90_000  # two busy cores parse 3 MB of JavaScript
OPERATIONS = (
    "/v1/models",
    "/v1/datasets",
    "/v1/jobs",
    "/v1/jobs/{job_id}",
    "/v1/jobs/{job_id}/results",
    "/v1/jobs/{job_id}/stats",
    "/v1/jobs/{job_id}/artifacts/{name}",
    "/readyz",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _tolerated(text: str) -> bool:
    """The pages' console: anything but a load their Content-Security-Policy refused, and
    of those only ReDoc's remote logo."""
    return "Content Security Policy" not in text or "cdn.redoc.ly/redoc/logo-mini.svg" in text


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    with offline_page(browser, TIMEOUT_MS, _tolerated) as page:
        yield page


def _swagger_paths(page: Page, server: Server) -> list[str]:
    response = page.goto(f"{server.url}/docs")
    assert response is not None and response.status == 200
    page.wait_for_selector(".opblock-summary-path")
    # Swagger UI draws the operations a tag at a time; wait for the last one's.
    page.wait_for_selector('.opblock-summary-path[data-path="/readyz"]')
    paths = page.locator(".opblock-summary-path").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('data-path'))"
    )
    return list(paths)


def _redoc_text(page: Page, server: Server) -> str:
    response = page.goto(f"{server.url}/redoc")
    assert response is not None and response.status == 200
    # ReDoc renders the whole document at once: the last operation's section means it is
    # done. (A selector, not wait_for_function: the page's CSP forbids Playwright's eval.)
    page.wait_for_selector('[id$="operation/readyz_readyz_get"]', state="attached")
    text = page.inner_text("body")
    assert "Submit Job" in text  # an operation's summary, not only the description's paths
    return text


def _fetch_status(page: Page, path: str, headers: dict[str, str], body: str | None = None) -> int:
    """What the page's own requests get ("Try it out" sends them so, from the same origin)."""
    script = """([path, headers, body]) => fetch(path, body === null ? {headers} :
        {method: "POST", headers: {...headers, "Content-Type": "application/json"}, body}
    ).then(r => r.status)"""
    status: int = page.evaluate(script, [path, headers, body])
    return status


def test_the_pages_render_offline_in_open_mode(
    tmp_path: Path, watched: Watched
) -> None:
    page = watched.page
    with running(tmp_path) as server:
        paths = _swagger_paths(page, server)
        for path in OPERATIONS:
            assert path in paths, (path, paths)
        # "Try it out" from the page passes the open-mode guard (same origin): a GET, and a
        # POST (with an Origin header) that reaches the route's own validation.
        assert _fetch_status(page, "/v1/jobs", {}) == 200
        assert _fetch_status(page, "/v1/jobs", {}, body="{}") == 422
        text = _redoc_text(page, server)
        for path in OPERATIONS:
            assert path in text, path


def test_the_pages_render_offline_with_api_keys(
    tmp_path: Path, watched: Watched
) -> None:
    page = watched.page
    with running(tmp_path, api_keys=f"docs={KEY}") as server:
        assert "/v1/jobs/{job_id}/results" in _swagger_paths(page, server)
        assert _fetch_status(page, "/v1/jobs", {}) == 401  # the pages are open, the API not
        assert _fetch_status(page, "/v1/jobs", {"Authorization": f"Bearer {KEY}"}) == 200
        assert "/v1/jobs/{job_id}/stats" in _redoc_text(page, server)


def test_try_it_out_offers_the_documented_example(
    tmp_path: Path, watched: Watched
) -> None:
    page = watched.page
    with running(tmp_path) as server:
        _swagger_paths(page, server)
        operation = page.locator("#operations-jobs-submit_job_v1_jobs_post")
        operation.locator(".opblock-summary").click()
        operation.locator("button.try-out__btn").click()
        editor = operation.locator("textarea.body-param__text")
        shown = json.loads(editor.input_value())
        assert shown == next(iter(JOB_CREATE_EXAMPLES.values()))["value"]
