"""A job's webhook deliveries: each event, its state and every attempt (the README's
Webhooks section)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from service.deps import OwnedJob, StoreDep, TenantDep
from service.errors import error_responses
from service.webhook_schemas import DeliveriesPublic, DeliveryPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}/deliveries", response_model=DeliveriesPublic, responses=error_responses(404))
async def list_deliveries(job: OwnedJob, tenant: TenantDep, store: StoreDep) -> DeliveriesPublic:
    """The job's webhook deliveries, oldest event first, with every attempt."""
    found = await run_in_threadpool(store.webhooks.for_job, tenant, job.id)
    return DeliveriesPublic(data=[DeliveryPublic.from_record(d) for d in found], count=len(found))
