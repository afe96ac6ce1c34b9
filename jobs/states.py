"""Job and upload states, and the transitions between them."""

from enum import StrEnum


class JobStatus(StrEnum):
    """Lifecycle of a pruning job.

    queued -> running -> succeeded | failed | cancelled; queued -> cancelled.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)


# Jobs that hold a worker or wait for one.
ACTIVE_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class ModelStatus(StrEnum):
    """An uploaded model is `pending` until a worker has inspected its graph."""

    PENDING = "pending"
    READY = "ready"
    INVALID = "invalid"


class Stage(StrEnum):
    """What a running job is doing; reported as `progress.stage`."""

    QUEUED = "queued"
    LOADING = "loading"
    STATISTICS = "statistics"
    BASELINE = "baseline"
    RANKING = "ranking"  # the reconstruction criterion ranks every group's neurons
    CANDIDATES = "candidates"
    PUBLISHING = "publishing"
    DONE = "done"
