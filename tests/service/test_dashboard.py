"""The dashboard page at `/`: served with a strict policy, open like /docs, nothing loaded
from another host, every module it imports present and installed.

tests/service/test_dashboard_browser.py drives the page in a real browser; these checks
need none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest
from fastapi.testclient import TestClient

from service.dashboard import dashboard_policy
from service.openapi_docs import STATIC_DIR
from tests.service.api_helpers import ClientFactory

DASHBOARD = STATIC_DIR / "dashboard"
_PAGE_REFERENCES = re.compile(r'(?:src|href)="([^"#]+)"')
_IMPORTS = re.compile(r'^import .* from "(\./[^"]+)";$', re.MULTILINE)
_INLINE_SCRIPTS = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)
_ANY_URL = re.compile(r"\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


@pytest.mark.parametrize("keys", [None, "t=key-0123456789abcdef"])
def test_the_page_is_served_without_a_key_under_a_strict_policy(
    make_client: ClientFactory, keys: str | None
) -> None:
    client: TestClient = make_client(api_keys=keys)  # no Authorization header is sent
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == dashboard_policy()
    policy = dict(d.strip().split(" ", 1) for d in dashboard_policy().split(";"))
    # No inline script but the import map (by its hash), no eval, no other host.
    inline = _INLINE_SCRIPTS.findall(response.text)
    assert len(inline) == 1 and json.loads(inline[0])["imports"]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert policy["img-src"] == "'self' data:" and "frame-src" not in policy  # no frames
    assert policy["require-trusted-types-for"] == "'script'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "{{" not in response.text  # every placeholder filled
    assert client.head("/").status_code == 200
    if keys:
        assert client.get("/v1/jobs").status_code == 401  # the page is open, the API is not


def test_everything_the_page_loads_comes_from_the_service(client: TestClient) -> None:
    page = client.get("/").text
    assert '<base href="/">' in page
    urls = _PAGE_REFERENCES.findall(page.replace('<base href="/">', ""))
    assert "static/dashboard/js/main.js?v=" in " ".join(urls)
    for url in urls:
        assert not url.startswith(("/", "http:", "https:")), url  # relative to <base>
        response = client.get(f"/{url}")
        assert response.status_code == 200, url
    module = client.get("/static/dashboard/js/main.js")
    assert "javascript" in module.headers["content-type"]  # browsers refuse modules otherwise


def test_every_module_is_addressed_by_its_content(client: TestClient) -> None:
    """A browser caches the static files by heuristic (they carry no Cache-Control): after
    an upgrade it must not run a new module beside an old one it kept. The page's links
    and the import map (which the modules' own `./x.js` imports go through) name each file
    with a fingerprint of its content."""
    page = client.get("/").text
    imports = json.loads(_INLINE_SCRIPTS.findall(page)[0])["imports"]
    modules = sorted((DASHBOARD / "js").glob("*.js"))
    assert len(imports) == len(modules)
    for module in modules:
        digest = hashlib.sha256(module.read_bytes()).hexdigest()[:12]
        key = f"./static/dashboard/js/{module.name}"
        assert imports[key] == f"{key}?v={digest}"
    css = hashlib.sha256((DASHBOARD / "dashboard.css").read_bytes()).hexdigest()[:12]
    assert f'href="static/dashboard/dashboard.css?v={css}"' in page
    assert imports["./static/dashboard/js/main.js"].removeprefix("./") in page


def test_every_module_imported_exists_and_no_asset_names_another_host() -> None:
    sources = sorted(DASHBOARD.rglob("*.js")) + sorted(DASHBOARD.glob("*.css"))
    assert len(sources) >= 5
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert not _ANY_URL.search(text), (source, _ANY_URL.search(text))
        for imported in _IMPORTS.findall(text):
            assert (source.parent / imported).is_file(), (source, imported)
    # The page's own markup may link an SVG namespace only (the favicon).
    assert not _ANY_URL.search((DASHBOARD / "index.html").read_text(encoding="utf-8"))


def test_behind_a_path_prefix_the_page_loads_from_under_it(client: TestClient) -> None:
    """uvicorn --root-path /api: the page's <base> carries it, so every relative URL (assets
    and API calls alike) does too."""
    prefixed = TestClient(client.app, root_path="/api")
    assert '<base href="/api/">' in prefixed.get("/").text


def test_the_page_is_not_an_api_operation(client: TestClient) -> None:
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_page_and_its_assets_are_counted_under_their_own_routes(client: TestClient) -> None:
    """Assets are labelled by their mount, not `unmatched` (a label for requests no route
    took, such as a scanner's probes), and with one label however many files there are."""
    client.get("/")
    client.get("/static/dashboard/js/main.js")
    client.get("/static/dashboard/dashboard.css")
    text = client.get("/metrics").text
    assert 'deadweight_http_requests_total{method="GET",route="/",status="200"} 1.0' in text
    assert (
        'deadweight_http_requests_total{method="GET",route="/static/{path}",status="200"} 2.0'
        in text
    )
    assert 'route="unmatched"' not in text
