"""Open mode (no API keys) answers loopback hosts and same-origin requests only.

Browsers send `Origin` (and Fetch Metadata) on what a web page asks for; curl, scripts and
the Python client send neither and keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.origin import refusal
from tests.service.api_helpers import npz_bytes
from tests.service.conftest import make_settings
from tests.service.live_server import Server, running

PORT = 8000


def scope(method: str = "GET", **headers: str) -> dict[str, Any]:
    raw = [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()]
    server = ("127.0.0.1", PORT)
    return {"type": "http", "method": method, "scheme": "http", "headers": raw, "server": server}


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]", "[::1]:9", None]
)
def test_loopback_hosts_are_served(host: str | None) -> None:
    assert refusal(scope(**({} if host is None else {"host": host}))) is None


@pytest.mark.parametrize(
    "host",
    [
        "evil.example", "evil.example:8000", "127.0.0.1.nip.io", "10.0.0.5:8000", "[::2]",
        "a:b:c", "evil.com@127.0.0.1", "localhost/evil.com", "localhost#x", "localhost?x",
        "127.0.0.1:99999x", " localhost",
    ],
)  # fmt: skip
def test_other_hosts_are_refused(host: str) -> None:
    refused = refusal(scope(host=host))
    assert refused is not None and refused[0] == "forbidden_host"
    assert "DEADWEIGHT_API_KEYS" in refused[1]


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000"),
        ("http://localhost:8000", "localhost:8000"),
        ("http://[::1]:8000", "[::1]:8000"),
        ("http://localhost", "localhost:80"),
    ],
)
def test_same_origin_requests_are_served(origin: str, host: str) -> None:
    assert refusal(scope("POST", host=host, origin=origin)) is None


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1:3000",  # another local server's page
        "http://localhost:8000",  # another origin than the one addressed (127.0.0.1:8000)
        "https://127.0.0.1:8000",
        "null",  # sandboxed frames and file: pages
        "http://127.0.0.1:8000/path",
    ],
)
def test_cross_origin_requests_are_refused(origin: str) -> None:
    refused = refusal(scope("POST", host="127.0.0.1:8000", origin=origin))
    assert refused is not None and refused[0] == "forbidden_origin"
    assert origin in refused[1] and "DEADWEIGHT_API_KEYS" in refused[1]


def test_cross_site_fetch_metadata_is_refused_but_a_followed_link_is_not() -> None:
    embedded = scope(host="127.0.0.1:8000", sec_fetch_site="cross-site", sec_fetch_mode="no-cors")
    assert refusal(embedded) is not None
    link = scope(host="127.0.0.1:8000", sec_fetch_site="cross-site", sec_fetch_mode="navigate")
    assert refusal(link) is None
    form_post = scope(
        "POST", host="127.0.0.1:8000", sec_fetch_site="cross-site", sec_fetch_mode="navigate"
    )
    assert refusal(form_post) is not None
    assert refusal(scope(host="127.0.0.1:8000", sec_fetch_site="same-origin")) is None


@pytest.fixture
def loopback_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app as uvicorn would call it on 127.0.0.1:8000 (the guard needs a socket address)."""
    app = create_app(make_settings(tmp_path / "data"))
    with TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as client:
        yield client


def test_the_app_refuses_a_rebound_host_and_serves_its_own(loopback_client: TestClient) -> None:
    response = loopback_client.get("/v1/jobs", headers={"Host": "rebind.evil.example"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden_host"
    assert loopback_client.get("/v1/jobs").status_code == 200


def test_with_api_keys_any_host_and_origin_reach_authentication(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data", api_keys="acme=secret-key"))
    with TestClient(app, base_url=f"http://127.0.0.1:{PORT}") as client:
        headers = {"Host": "api.example.com", "Origin": "https://app.example.com"}
        assert client.get("/v1/jobs", headers=headers).status_code == 401
        headers["Authorization"] = "Bearer secret-key"
        assert client.get("/v1/jobs", headers=headers).status_code == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("open")) as started:
        yield started


def _blobs(server: Server) -> list[Path]:
    return [p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]


def test_a_web_page_cannot_upload_to_the_served_api(server: Server) -> None:
    """A cross-origin multipart POST (what any page's form can send) stores nothing."""
    files = {"file": ("data.npz", npz_bytes(), "application/octet-stream")}
    response = httpx.post(
        f"{server.url}/v1/datasets",
        files=files,
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "forbidden_origin"
    assert _blobs(server) == []


def test_dns_rebinding_cannot_read_the_served_api(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/jobs", headers={"Host": f"evil.example:{server.port}"})
    assert response.status_code == 403
    assert "DEADWEIGHT_API_KEYS" in response.json()["error"]["message"]


def test_scripts_and_the_api_s_own_pages_are_served(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/jobs").status_code == 200  # no Origin: curl, scripts
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert httpx.get(f"{server.url}/v1/jobs", headers=own).status_code == 200
    by_name = f"http://localhost:{server.port}"
    assert httpx.get(f"{by_name}/docs", headers={"Origin": by_name}).status_code == 200
