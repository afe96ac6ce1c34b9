"""The API's routers, one module per resource."""

from fastapi import APIRouter, Depends

from service.auth import get_tenant
from service.routes import datasets, jobs, models, ops

api_router = APIRouter()
# Every resource route needs an API key (when keys are set), whether or not it reads the
# tenant itself; health checks stay open for orchestrators.
for module in (models, datasets, jobs):
    api_router.include_router(module.router, dependencies=[Depends(get_tenant)])
api_router.include_router(ops.router)

__all__ = ["api_router"]
