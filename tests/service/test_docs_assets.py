"""The documentation pages' assets: served by the app, open like /openapi.json, installed.

tests/service/test_docs_offline.py renders the pages in a browser; these checks need none.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.openapi_docs import STATIC_DIR
from tests.service.api_helpers import ClientFactory

ROOT = Path(__file__).resolve().parents[2]
_REFERENCES = re.compile(r'(?:src|href|spec-url)="([^"]+)"|url: *[\'"]([^\'"]+)[\'"]')


@pytest.mark.parametrize("keys", [None, "t=key-0123456789abcdef"])
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_page_and_everything_it_loads_come_from_the_service(
    make_client: ClientFactory, page: str, keys: str | None
) -> None:
    client: TestClient = make_client(api_keys=keys)  # no Authorization header is sent
    response = client.get(page)
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    urls = [a or b for a, b in _REFERENCES.findall(response.text)]
    assert "/openapi.json" in urls and len(urls) >= 2
    for url in urls:
        assert url.startswith("/"), url  # nothing from another host
        assert client.get(url).status_code == 200, url


def test_a_missing_asset_is_a_404_in_the_api_format(client: TestClient) -> None:
    response = client.get("/static/swagger-ui/nothing.js")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_every_asset_is_package_data() -> None:
    """`pip install .` (the Dockerfile) copies what pyproject's package-data names only."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["service"]
    package = ROOT / "service"
    listed = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    files = {path for path in STATIC_DIR.rglob("*") if path.is_file()}
    assert files and files <= listed, sorted(str(p) for p in files - listed)
    assert {"LICENSE", "redoc.standalone.js"} <= {p.name for p in files if "redoc" in str(p)}


def test_behind_a_path_prefix_the_pages_load_from_under_it(client: TestClient) -> None:
    """uvicorn --root-path /api (a proxy serving the API under /api): every URL carries it."""
    prefixed = TestClient(client.app, root_path="/api")
    for page in ("/docs", "/redoc"):
        urls = [a or b for a, b in _REFERENCES.findall(prefixed.get(page).text)]
        assert urls and all(url.startswith("/api/") for url in urls), urls
