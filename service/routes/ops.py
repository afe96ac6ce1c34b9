"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobs.s3_blobs import S3BlobStore
from service.deps import BlobsDep, QueueDep, SettingsDep, StoreDep
from service.errors import error_body
from service.limits import check_free_disk
from service.schemas import HealthPublic, NotReadyPublic, ReadyPublic

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthPublic)
async def healthz() -> HealthPublic:
    """The process is up (it checks nothing else)."""
    # `async`: nothing here blocks, so no hop to the thread pool (probes come often).
    return HealthPublic(status="ok")


def _check(probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


@router.get(
    "/readyz",
    response_model=ReadyPublic,
    responses={
        503: {
            "model": NotReadyPublic,
            "description": "a dependency is unreachable; `checks` says which (code `not_ready`)",
        }
    },
)
def readyz(
    store: StoreDep, queue: QueueDep, blobs: BlobsDep, settings: SettingsDep
) -> ReadyPublic | JSONResponse:
    """The job store, the broker and (with an S3 store) the bucket are reachable (503
    otherwise); `disk` says whether the data directory has its free space.

    A short disk makes the answer `degraded`, still 200: a probe that took the API out of
    service then would also stop the deletions that free the space.
    """
    checks = {
        "database": _check(store.ping),
        "broker": _check(queue.ping),
        "disk": _check(lambda: check_free_disk(blobs, settings, 0)),
    }
    if isinstance(blobs, S3BlobStore):
        checks["blob_store"] = _check(blobs.ping)  # a HEAD on the bucket
    failing = "; ".join(
        f"{name}: {result}" for name, result in checks.items() if result != "ok" and name != "disk"
    )
    if not failing:
        return ReadyPublic(status="ready" if checks["disk"] == "ok" else "degraded", checks=checks)
    # Probes read `status`/`checks`; clients that parse every error read `error`.
    body = {"status": "unavailable", "checks": checks, **error_body("not_ready", failing)}
    return JSONResponse(body, status_code=503)
