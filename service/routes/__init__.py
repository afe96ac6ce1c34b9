"""The API's routers, one module per resource."""

from fastapi import APIRouter

from service.routes import datasets, jobs, models, ops

api_router = APIRouter()
for module in (models, datasets, jobs, ops):
    api_router.include_router(module.router)

__all__ = ["api_router"]
