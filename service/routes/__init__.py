"""The API's routers, one module per resource."""

from fastapi import APIRouter, Depends, FastAPI

from service.auth import get_tenant
from service.routes import datasets, deliveries, jobs, metrics, models, ops


def include_routers(app: FastAPI) -> None:
    """Add every router to `app` itself, the probes and the polled jobs first.

    Each router is included directly: FastAPI matches a request against every level of
    nested routers twice (to select, then to handle), and routes in order, so one level and
    the hot routes first keep routing a small part of a request's cost. The prefixes are
    disjoint, so the order changes no match.
    """
    app.include_router(ops.router)
    app.include_router(metrics.router)  # a token of its own (DEADWEIGHT_METRICS_TOKEN)
    # Every resource route needs an API key (when keys are set), whether or not it reads the
    # tenant itself; health checks stay open for orchestrators.
    for module in (jobs, deliveries, models, datasets):
        router: APIRouter = module.router
        app.include_router(router, dependencies=[Depends(get_tenant)])


__all__ = ["include_routers"]
