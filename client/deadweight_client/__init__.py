"""deadweight-client: the Deadweight pruning service from Python, without torch.

from deadweight_client import Client

client = Client()  # DEADWEIGHT_URL, DEADWEIGHT_API_KEY
model = client.upload_model("model.pt2")  # waits for the service's inspection
data = client.upload_dataset("data.npz")
job = client.submit(model, data, thresholds="f0.5,f0.8").wait()
job.raise_for_status()
job.download("recommended", "out/")
"""

from __future__ import annotations

from deadweight_client.async_client import AsyncClient
from deadweight_client.client import Client
from deadweight_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    DeadweightError,
    InvalidModel,
    JobFailed,
    NoRecommendation,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from deadweight_client.job import RECOMMENDED, AsyncJob, Job, JobView
from deadweight_client.records import (
    TERMINAL_STATUSES,
    Artifact,
    DatasetRecord,
    JobRecord,
    ModelRecord,
    Progress,
    Results,
)
from deadweight_client.retry import RetryPolicy
from deadweight_client.thresholds import thresholds_from_text
from deadweight_client.version import __version__

__all__ = [
    "RECOMMENDED",
    "TERMINAL_STATUSES",
    "ApiError",
    "Artifact",
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Client",
    "Conflict",
    "DatasetRecord",
    "DeadweightError",
    "InvalidModel",
    "Job",
    "JobFailed",
    "JobRecord",
    "JobView",
    "ModelRecord",
    "NoRecommendation",
    "NotFound",
    "Progress",
    "RateLimited",
    "Results",
    "RetryPolicy",
    "ServerError",
    "ServiceUnreachable",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "__version__",
    "thresholds_from_text",
]
