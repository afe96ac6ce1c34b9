"""What a bucket holds of each job (`jobs.s3_blobs`): one listing of `jobs/`, read as the
attempts that have files and whether a manifest names one (the reaper's sweep,
`jobs.remote_sweep`, and an attempt's clean-up of its predecessors' keys)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jobs.blobs import is_job_id
from jobs.object_store import ObjectStore
from jobs.remote_manifest import MANIFEST_KEY

log = logging.getLogger("deadweight.blobs")

_ATTEMPT = "attempt-"


@dataclass
class StoredJob:
    """A job's keys in the bucket: the attempts that have files, and whether a manifest."""

    attempts: set[int] = field(default_factory=set)
    manifest: bool = False


class JobListing:
    """Lists job keys under `<prefix>/jobs/`; one per store, it logs a foreign key once."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._foreign_logged = False

    def jobs_under(self, under: str) -> dict[str, StoredJob]:
        """Job ID -> what it has, for every key under `under` (a page at a time)."""
        prefix = self.objects.key("jobs") + "/"
        found: dict[str, StoredJob] = {}
        for info in self.objects.list(under):
            job_id, _, rest = info.key[len(prefix) :].partition("/")
            if not is_job_id(job_id):
                self._foreign(info.key)
                continue
            stored = found.setdefault(job_id, StoredJob())
            attempt, sep, _ = rest.partition("/")
            if sep and attempt.startswith(_ATTEMPT) and attempt[len(_ATTEMPT) :].isdigit():
                stored.attempts.add(int(attempt[len(_ATTEMPT) :]))
            elif rest == MANIFEST_KEY:
                stored.manifest = True
        return found

    def _foreign(self, key: str) -> None:
        # Not a job's (an operator's note, another application's keys beside an empty
        # prefix): never Deadweight's to remove, nor a reason to stop the sweep. Logged
        # once, as the sweep lists it every time.
        if not self._foreign_logged:
            self._foreign_logged = True
            log.warning("leaving %s alone: not a job's key (only the first is logged)", key)
