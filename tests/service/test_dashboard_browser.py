"""The dashboard in a real headless Chromium (tests/service/browser.py), against a real
`deadweight serve` with its embedded worker, as a person uses it: the API key typed once,
a model and data uploaded through the forms, a job submitted and followed on the job list
until it ends, then its page: the recommendation, the files (downloaded through the page)
and the report, whose charts must be drawn. No other host is asked for anything, and the
console shows no error.

With DEADWEIGHT_SCREENSHOTS=<folder> (`make screenshots`) the test also saves the pictures
the README shows, and submits a second job so that the list shows one running.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import FloatRect

from tests.integration.conftest import DEADWEIGHT, Processes, base_env, free_port, wait_http
from tests.service.browser import Browser, Page, Watched, chromium, offline_page
from tests.service.live_server import running

TENANT, KEY = "browser", "dashboard-key-0123456789"
TIMEOUT_MS = 60_000
JOB_TIMEOUT_S = 240  # two busy cores: statistics, 3 cuts, evaluations and latency timings
SHOTS = os.environ.get("DEADWEIGHT_SCREENSHOTS")
VIEWPORT = {"width": 1280, "height": 860}


@dataclass(frozen=True)
class Service:
    url: str
    files: Path  # model.pt2, data.npz, eval.npz from `deadweight example`


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("dashboard")
    (root / "logs").mkdir()
    procs = Processes(root / "logs")
    env = base_env(root / "data")
    env["DEADWEIGHT_API_KEYS"] = f"{TENANT}={KEY}"
    port = free_port()
    try:
        api = procs.start("serve", [DEADWEIGHT, "serve", "--port", str(port)], env)
        # The digits example while the service starts: a trained MLP and its data.
        subprocess.run([DEADWEIGHT, "example", "--out", str(root / "files")], check=True, env=env)
        wait_http(f"http://127.0.0.1:{port}/healthz", api, procs)
        yield Service(f"http://127.0.0.1:{port}", root / "files")
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    with offline_page(browser, TIMEOUT_MS, viewport=VIEWPORT, accept_downloads=True) as page:
        yield page


def shot(page: Page, name: str, full_page: bool = False, clip: FloatRect | None = None) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=full_page, clip=clip)


def api(service: Service, path: str) -> httpx.Response:
    response = httpx.get(
        f"{service.url}{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    response.raise_for_status()
    return response


def test_a_job_through_the_forms_followed_live_with_its_report(
    service: Service, watched: Watched
) -> None:
    page = watched.page
    page.goto(service.url)

    # The key, once: a wrong one is refused, the right one opens the jobs.
    page.fill("#api-key", "not-the-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-form .error")
    assert "not accepted" in page.inner_text("#key-form")
    # Chromium logs every refused request; this one, and only it, was expected.
    assert len(watched.errors) == 1 and "status of 401" in watched.errors[0], watched.errors
    watched.errors.clear()
    page.fill("#api-key", KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#jobs td.empty")
    assert "No jobs yet" in page.inner_text("#jobs")

    # Uploads through the forms; the model is inspected by the worker before it is ready.
    page.click("nav a[data-nav=new]")
    page.set_input_files("#model-file", str(service.files / "model.pt2"))
    page.click("#model-file-upload")
    page.wait_for_selector(".described[data-status=ready]")
    assert "2 prunable groups" in page.inner_text(".described")
    page.set_input_files("#dataset-file", str(service.files / "data.npz"))
    page.click("#dataset-file-upload")
    page.wait_for_selector("text=rows of shape [64]")

    # The job: three fractions, and the body the form will send.
    page.select_option("#mode", "fractions")
    page.fill("#fractions", "0.3, 0.6, 0.85")
    page.click("summary:text('Request body')")
    body = json.loads(page.inner_text("#body-preview"))
    models = api(service, "/v1/models").json()["data"]
    datasets = api(service, "/v1/datasets").json()["data"]
    assert body == {
        "model_id": models[0]["id"],
        "dataset_id": datasets[0]["id"],
        "thresholds": [{"fraction": 0.3}, {"fraction": 0.6}, {"fraction": 0.85}],
    }
    shot(page, "dashboard-new-job.png", full_page=True)
    # What the form cannot read is refused before sending (a number field holding "1e"
    # reads as empty, and the option would silently take its default)...
    page.locator("#max-metric-drop").press_sequentially("1e")
    page.click("#submit")
    assert "not a number: Max metric drop" in page.inner_text("#submit-error")
    page.fill("#max-metric-drop", "")
    # ...and what the API refuses is shown in its words.
    page.fill("#fractions", "0.3, 0.6, 1.5")
    page.click("#submit")
    page.wait_for_selector("#submit-error .error code:text('invalid_request')")
    assert "thresholds[2].fraction" in page.inner_text("#submit-error")
    assert len(watched.errors) == 1 and "status of 422" in watched.errors[0], watched.errors
    watched.errors.clear()
    page.fill("#fractions", "0.3, 0.6, 0.85")
    page.click("#submit")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    # The job's page is read again every second; what the user opened stays open.
    page.click("#job-options summary")
    page.wait_for_timeout(1300)
    assert page.locator("#job-options").get_attribute("open") is not None
    # The list follows the job without a reload, from queued or running to succeeded.
    page.click("nav a[data-nav=jobs]")
    row = page.locator(f"#jobs tr[data-job='{job_id}']")
    row.wait_for()
    seen = [row.get_attribute("data-status")]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while seen[-1] not in {"succeeded", "failed", "cancelled"} and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        status = row.get_attribute("data-status")
        if status != seen[-1]:
            seen.append(status)
            if status == "running":
                assert re.search(r"\d+ %", row.locator(".progress").inner_text())
    assert seen[0] in {"queued", "running"} and seen[-1] == "succeeded", seen
    assert "model.pt2" in row.inner_text() and "3 thresholds" in row.inner_text()
    if SHOTS:  # a second job (after the first: two at once would share its timings' cores)
        page.click("nav a[data-nav=new]")
        page.wait_for_selector("#model option[value]:not([value=''])", state="attached")
        page.select_option("#mode", "search")
        page.click("#submit")
        page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
        page.click("nav a[data-nav=jobs]")
        page.wait_for_selector("#jobs tr[data-status=running]")
        page.wait_for_timeout(1500)
    shot(page, "dashboard-jobs.png")

    # The job's page: the recommendation, the files, the report.
    row.locator("a").first.click()
    page.wait_for_selector("#summary")
    results = api(service, f"/v1/jobs/{job_id}/results").json()
    summary = page.inner_text("#summary")
    assert "RECOMMENDED" in summary.upper()
    best = results["candidates"][results["recommended"]]
    assert f"{best['size_reduction'] * 100:.1f} %" in summary
    names = page.locator("#job-files a").all_inner_texts()
    assert {"report.html", "results.csv", "tradeoff.png"} <= set(names)
    assert {c["artifact"] for c in results["candidates"]} <= set(names)

    report = page.locator("#report")  # CSS locators reach into its shadow root
    report.locator("h1", has_text="Pruning report").wait_for()
    charts = report.locator("svg")
    assert charts.count() >= 3  # metric vs parameters, metric vs latency, statistics
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, box
    # Every candidate and the baseline are drawn on the trade-off chart, and tabled.
    assert charts.first.locator("circle").count() >= len(results["candidates"]) + 1
    table = report.locator("table").first.inner_text()
    assert "baseline" in table and "latency" in table
    # The report's own style applies inside it (the recommended row is highlighted).
    recommended = report.locator("tr.recommended td").first
    assert recommended.evaluate("c => getComputedStyle(c).backgroundColor") == "rgb(255, 243, 224)"
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "dashboard-job.png")
    top = report.bounding_box()
    assert top is not None
    clip: FloatRect = {**top, "height": min(top["height"], 1150)}
    shot(page, "dashboard-report.png", full_page=True, clip=clip)

    # Downloads go through the page with the key: from the file list and from the report.
    with page.expect_download() as download:
        page.locator("#job-files a", has_text="results.csv").click()
    saved = Path(download.value.path()).read_bytes()
    assert saved == api(service, f"/v1/jobs/{job_id}/artifacts/results.csv").content
    rows = list(csv.reader(io.StringIO(saved.decode())))
    assert len(rows) == len(results["candidates"]) + 2  # the header and the baseline
    with page.expect_download() as download:
        report.locator(f"a[href='{best['artifact']}']").first.click()
    assert download.value.suggested_filename == best["artifact"]

    # The key lasts for the tab: a reload asks for nothing.
    page.reload()
    page.wait_for_selector("#summary")
    assert page.locator("#key-form").count() == 0

    # A key the service stops accepting while the page is open brings the key form back
    # (instead of every view retrying), and the view returns once a good key is given.
    page.evaluate("sessionStorage.setItem('deadweight.apiKey', 'revoked-key')")
    page.click("nav a[data-nav=jobs]")
    page.wait_for_selector("#key-form .error")
    assert "no longer accepts" in page.inner_text("#key-form")
    assert page.evaluate("sessionStorage.getItem('deadweight.apiKey')") is None
    assert all("status of 401" in e for e in watched.errors), watched.errors
    watched.errors.clear()
    page.fill("#api-key", KEY)
    page.click("#key-form button[type=submit]")
    page.locator(f"#jobs tr[data-job='{job_id}']").wait_for()


def test_open_mode_on_loopback_needs_no_key(tmp_path: Path, browser: Browser) -> None:
    """Without API keys (the API answers this machine only) the page asks for none, and its
    requests pass the open-mode guard as the API's own origin."""
    data = tmp_path / "rows.csv"
    data.write_text("a,b,target\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)))
    with (
        running(tmp_path) as server,
        offline_page(browser, TIMEOUT_MS, viewport=VIEWPORT) as watched,
    ):
        page = watched.page
        page.goto(f"{server.url}/#/new")
        page.wait_for_selector("#dataset-file")
        assert page.inner_text("#who") == "open mode"
        assert page.locator("#key-form").count() == 0
        # A CSV with a label-like column and none named: the API's message, shown as is.
        page.set_input_files("#dataset-file", str(data))
        page.click("#dataset-file-upload")
        page.wait_for_selector("#dataset-file-result .error")
        assert "label_column" in page.inner_text("#dataset-file-result")
        assert len(watched.errors) == 1 and "status of 422" in watched.errors[0], watched.errors
        watched.errors.clear()
        page.fill("#label-column", "target")
        page.click("#dataset-file-upload")
        page.wait_for_selector("text=40 rows of shape [2]")
        assert "rows.csv" in page.inner_text("#dataset")
