"""The web dashboard at `/`: one page that lists the tenant's jobs, follows them live, shows a
job's report and files, and uploads models and data and submits jobs through forms.

The page is static HTML, CSS and JavaScript modules under `service/static/dashboard/`,
written by hand and committed (no build step, nothing fetched from another host). It talks
to the same `/v1` API as any client, from the browser. The API key is typed into the page
and kept in the tab's `sessionStorage` only: the server never stores it, and it is sent as
`Authorization: Bearer` like every client's. In open mode (no keys, loopback only) the page
needs none; `service.origin` already lets the API's own origin through and nothing else.

Like `/docs`, the page itself needs no key: it holds no tenant's data until the key is given.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from service.openapi_docs import STATIC_DIR

DASHBOARD_URL = "/"
_PAGE = STATIC_DIR / "dashboard" / "index.html"

# Scripts and styles from this origin only. Inline styles are allowed because a job's
# report (self-contained, its styles inline) is shown in a sandboxed frame, and a frame made
# from `srcdoc` takes this page's policy. The report's frame runs no script (its sandbox has
# no allow-scripts); the page's own scripts are files, so `script-src` stays 'self'.
DASHBOARD_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob:; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": DASHBOARD_POLICY,
    "X-Content-Type-Options": "nosniff",
    # The page's address (with a job ID in its fragment) is nobody else's business.
    "Referrer-Policy": "no-referrer",
    # A new release's page must not be served from a cache with the old release's scripts.
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=1)
def _template() -> str:
    return _PAGE.read_text(encoding="utf-8")


def _prefix(request: Request) -> str:
    # Behind a proxy that mounts the API under a path (uvicorn --root-path), the page's
    # scripts and its API calls carry that path: every URL in the page is relative to <base>.
    return str(request.scope.get("root_path", "")).rstrip("/")


async def dashboard(request: Request) -> HTMLResponse:
    """The page; its scripts read everything else from the API."""
    base = escape(f"{_prefix(request)}/", quote=True)
    version = escape(str(request.app.version), quote=True)
    # Whether to ask for a key at once (rather than after a refused call): the key ring
    # says whether there are keys, never which.
    auth = "keys" if request.app.state.keyring.enabled else "open"
    page = (
        _template()
        .replace("{{base}}", base)
        .replace("{{version}}", version)
        .replace("{{auth}}", auth)
    )
    return HTMLResponse(page, headers=_HEADERS)


def install_dashboard(app: FastAPI) -> None:
    """Serve the page at `/` (its assets are under `/static/dashboard/`, mounted with the
    documentation's in `service.openapi_docs.install_docs`)."""
    app.add_api_route(DASHBOARD_URL, dashboard, methods=["GET", "HEAD"], include_in_schema=False)


__all__ = ["DASHBOARD_POLICY", "DASHBOARD_URL", "install_dashboard"]
