"""GET /metrics: the Prometheus text exposition (`service.metrics`, `service.store_metrics`).

It needs no tenant key: a scraper is no tenant, and the figures name tenants but hold none
of their data. `DEADWEIGHT_METRICS_TOKEN` protects it with a token of its own
(`Authorization: Bearer <token>`), compared by digest in constant time like the API keys.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.auth import KeyRing
from service.errors import Unauthorized
from service.metrics import ApiMetrics

router = APIRouter(tags=["operations"])
_bearer = HTTPBearer(auto_error=False)


# Outside the OpenAPI document: it is no JSON API, and scrapers are configured, not generated.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (names `deadweight_*`)."""
    token: KeyRing = request.app.state.metrics_token
    if token.enabled:
        credentials = await _bearer(request)
        if credentials is None or token.tenant_for(credentials.credentials) is None:
            raise Unauthorized(
                "send the metrics token (DEADWEIGHT_METRICS_TOKEN) as `Authorization: Bearer "
                "<token>`",
                headers={"WWW-Authenticate": "Bearer"},
            )
    registry = _metrics(request).registry
    # The store's collector queries the database: off the event loop.
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _metrics(request: Request) -> ApiMetrics:
    found: ApiMetrics = request.app.state.metrics
    return found
