"""The FastAPI application: `create_app()` wires settings, stores, queue, routes and errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from jobs.blob_stores import open_blob_store
from jobs.disk_space import ensure_reserve
from jobs.leftovers import sweep_tmp
from jobs.queue import Queue, make_celery
from jobs.settings import Settings, get_settings
from jobs.store import JobStore
from service.auth import KeyRing
from service.body_guard import RequestBodyGuard
from service.broker_metrics import BrokerCollector
from service.dashboard import install_dashboard
from service.error_handlers import install_error_handlers
from service.limits import UploadSlots
from service.metrics import ApiMetrics, RequestMetrics
from service.openapi_docs import install_docs
from service.origin import OpenModeGuard
from service.request_ids import RequestIds
from service.routes import include_routers
from service.store_metrics import StoreCollector

DESCRIPTION = """\
Deadweight finds the neurons of a trained network that carry almost no signal and cuts them
out, handing back a genuinely smaller model.

1. `POST /v1/models` a `torch.export` program (`.pt2`) and `POST /v1/datasets` calibration data.
2. `POST /v1/jobs` to run a threshold sweep; poll `GET /v1/jobs/{id}`.
3. Read `GET /v1/jobs/{id}/results` and download pruned models from `/artifacts`.

Errors are `{"error": {"code": "...", "message": "..."}}` (schema `ErrorPublic`); each error
response below lists the codes it can carry.
"""

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return version("deadweight")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; `settings` defaults to the environment's (`get_settings()`)."""
    resolved = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved.ensure_dirs()
        store = JobStore(resolved.resolved_database_url())
        # Idempotent: every process brings the schema up to date before serving.
        store.migrate()
        celery_app = make_celery(resolved)
        app.state.keyring = KeyRing(resolved.api_key_tenants())
        token = resolved.metrics_token
        app.state.metrics_token = KeyRing({token: "metrics"} if token else {})
        if not app.state.keyring.enabled:
            log.warning(
                "DEADWEIGHT_API_KEYS is not set: the API is open to every client that can reach it"
            )
        # From here on only the key ring's digests stand for the keys.
        app.state.settings = resolved.model_copy(update={"api_keys": None, "metrics_token": None})
        app.state.store = store
        # The data directory, or an S3 bucket (DEADWEIGHT_BLOB_URL) with this disk as a spool.
        app.state.blobs = blobs = await run_in_threadpool(open_blob_store, resolved)
        app.state.upload_slots = UploadSlots(resolved.tenant_uploads_in_flight)
        # Partial uploads of an API process that was killed; the reaper sweeps later ones.
        swept = await run_in_threadpool(sweep_tmp, blobs, resolved.leftover_seconds())
        if swept:
            log.info("removed %d leftover temporary upload files", swept)
        await run_in_threadpool(ensure_reserve, blobs.root)
        app.state.queue = Queue(celery_app)
        collectors = (StoreCollector(store), BrokerCollector(app.state.queue))
        for collector in collectors:
            metrics.registry.register(collector)
        try:
            yield
        finally:
            for collector in collectors:
                metrics.registry.unregister(collector)
            celery_app.close()
            store.dispose()

    app = FastAPI(
        title="Deadweight",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # The documentation's order, which is no longer the routes' (`include_routers`).
        openapi_tags=[{"name": tag} for tag in ("models", "datasets", "jobs", "operations")],
        # FastAPI's pages load their assets from a CDN; ours are served by the service.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.state.metrics = metrics = ApiMetrics()
    # Added last is outermost: the open-mode guard answers before any body is read, and
    # the request metrics count its refusals too.
    app.add_middleware(RequestBodyGuard, seconds=resolved.body_timeout_seconds)
    if not resolved.api_key_tenants():
        # A scraper on another host names this one by address: with a metrics token, the
        # token rather than the loopback Host check keeps /metrics from other machines.
        exempt = frozenset({"/metrics"}) if resolved.metrics_token else frozenset()
        app.add_middleware(OpenModeGuard, host_exempt_paths=exempt)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(RequestIds)  # outermost: every line of a request carries its ID
    include_routers(app)
    install_docs(app)
    install_dashboard(app)
    return app
