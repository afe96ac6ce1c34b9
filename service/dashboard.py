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

import base64
import hashlib
import json
from functools import lru_cache
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from service.openapi_docs import STATIC_DIR

DASHBOARD_URL = "/"
_ASSETS = STATIC_DIR / "dashboard"
_PAGE = _ASSETS / "index.html"
_MODULES = "static/dashboard/js"
# The one policy allowed to turn a string into markup (the job's report, in job_view.js).
_MARKUP_POLICY = "dashboard-report"


def _fingerprint(relative: str) -> str:
    return hashlib.sha256((_ASSETS / relative).read_bytes()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _import_map() -> str:
    """Every module's address with its content's fingerprint. The page's own links carry one
    too; the modules import each other by plain name (`./api.js`), which this map rewrites,
    so a browser never runs a new module beside a cached old one after an upgrade (the
    static files are served without Cache-Control, and browsers then cache by heuristic)."""
    imports = {
        f"./{_MODULES}/{path.name}": f"./{_MODULES}/{path.name}?v={_fingerprint(f'js/{path.name}')}"
        for path in sorted((_ASSETS / "js").glob("*.js"))
    }
    # Inside <script> nothing is unescaped: no "<" may appear, so "</script>" cannot either.
    return json.dumps({"imports": imports}, sort_keys=True).replace("<", "\\u003c")


@lru_cache(maxsize=1)
def dashboard_policy() -> str:
    """The page's Content-Security-Policy.

    Scripts from this origin, and the one inline script that is the import map (by its
    hash). Inline styles are allowed: the job's report (self-contained, its styles inline)
    is shown in a shadow root, and the page sets widths in `style` attributes. Images (the
    icon, CSS data: URLs) and API calls to this origin only; no frames, no plugins, no form
    posts, no framing by others. Trusted Types: only the report's named policy may turn a
    string into markup, so an `innerHTML` added by mistake fails instead of opening a hole.
    """
    digest = base64.b64encode(hashlib.sha256(_import_map().encode()).digest()).decode()
    return (
        f"default-src 'none'; script-src 'self' 'sha256-{digest}'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'self'; form-action 'none'; frame-ancestors 'none'; "
        f"require-trusted-types-for 'script'; trusted-types {_MARKUP_POLICY}"
    )


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": dashboard_policy(),
        "X-Content-Type-Options": "nosniff",
        # For browsers that predate frame-ancestors; and no window another site opened
        # keeps a handle on this one.
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        # The page's address (with a job ID in its fragment) is nobody else's business.
        "Referrer-Policy": "no-referrer",
        # A new release's page must not be served from a cache with the old release's scripts.
        "Cache-Control": "no-cache",
    }


@lru_cache(maxsize=1)
def _template() -> str:
    return (
        _PAGE.read_text(encoding="utf-8")
        .replace("{{importmap}}", _import_map())
        .replace("{{css}}", _fingerprint("dashboard.css"))
        .replace("{{main}}", _fingerprint("js/main.js"))
    )


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
    return HTMLResponse(page, headers=_headers())


def install_dashboard(app: FastAPI) -> None:
    """Serve the page at `/` (its assets are under `/static/dashboard/`, mounted with the
    documentation's in `service.openapi_docs.install_docs`)."""
    app.add_api_route(DASHBOARD_URL, dashboard, methods=["GET", "HEAD"], include_in_schema=False)


__all__ = ["DASHBOARD_URL", "dashboard_policy", "install_dashboard"]
