"""`/docs` (Swagger UI) and `/redoc` (ReDoc), with their assets served by the service itself.

FastAPI's own pages load their JavaScript and CSS from a CDN, so on a machine without
internet they are blank. The assets are vendored under `service/static/` (versions, sources
and checksums in its README) and served at `/static/`. No page asks another host for
anything: ReDoc's Google Fonts are off, and so is Swagger UI's validator badge (which sends
the document to validator.swagger.io); what the bundles still name of other hosts (ReDoc's
"API docs by Redocly" logo, from cdn.redoc.ly) the pages' Content-Security-Policy keeps the
browser from loading (the logo is then left out). Like `/openapi.json`, the pages and assets
need no API key: they describe the API and hold no tenant's data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service.openapi_errors import document_errors
from service.openapi_examples import document_examples

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"

_SWAGGER_PARAMETERS = {
    # FastAPI's defaults (the operations' anchors in the URL, the x- fields shown) ...
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    # ... and none of Swagger UI's calls to validator.swagger.io. (No persistAuthorization:
    # an API key typed into the page is not left in the browser's storage.)
    "validatorUrl": None,
}


# This origin only. Inline script and style: Swagger UI's page starts it with an inline
# script, and both UIs style their components at run time; ReDoc's search runs in a worker
# made from a blob; both draw icons as data: URLs, and "Try it out" shows a downloaded image
# (a job's plots) from a blob.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; base-uri 'none'; form-action 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def _prefix(request: Request) -> str:
    # Behind a proxy that mounts the API under a path (uvicorn --root-path), every URL the
    # page loads must carry that path too.
    return str(request.scope.get("root_path", "")).rstrip("/")


async def swagger_ui(request: Request) -> HTMLResponse:
    base = _prefix(request)
    app: FastAPI = request.app
    page = get_swagger_ui_html(
        openapi_url=f"{base}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{base}{STATIC_URL}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{STATIC_URL}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{base}{STATIC_URL}/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters=_SWAGGER_PARAMETERS,
    )
    return _offline(page)


async def redoc(request: Request) -> HTMLResponse:
    base = _prefix(request)
    app: FastAPI = request.app
    page = get_redoc_html(
        openapi_url=f"{base}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{base}{STATIC_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{base}{STATIC_URL}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
    return _offline(page)


def install_docs(app: FastAPI) -> None:
    """Serve the assets, the two pages, and the OpenAPI document with its errors described.

    The app must be built with `docs_url=None, redoc_url=None`: these replace FastAPI's pages.
    """
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    # Added to the app, not to a router with the API key dependency: open like /openapi.json.
    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document in `openapi_schema`; it is completed once, in place.
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        document_errors(schema)
        document_examples(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
