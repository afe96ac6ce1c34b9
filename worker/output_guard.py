"""A job's output limits: DEADWEIGHT_JOB_OUTPUT_BYTES and DEADWEIGHT_MIN_FREE_DISK_BYTES."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from jobs.settings import Settings

# Disk and output size are checked this often while the engine writes.
GUARD_EVERY_S = 1.0
# Less free space than this after an engine failure means the disk filled up.
_NEARLY_FULL_BYTES = 1024 * 1024


class OutputRefused(Exception):
    """The job's output would pass DEADWEIGHT_JOB_OUTPUT_BYTES or fill the disk."""


def disk_full_message(settings: Settings) -> str:
    return (
        "the data directory is full: the job could not write its results (it needs "
        f"{settings.min_free_disk_bytes} bytes free, DEADWEIGHT_MIN_FREE_DISK_BYTES, besides "
        "its output); delete finished jobs or unused uploads, or ask the operator for space"
    )


class OutputGuard:
    """DEADWEIGHT_JOB_OUTPUT_BYTES and DEADWEIGHT_MIN_FREE_DISK_BYTES for one attempt.

    Checked before the engine starts, about once a second while it writes (the engine is
    killed when a check fails), after it failed, and on the sealed result set. The engine
    also cannot write any single file larger than the output cap (RLIMIT_FSIZE).
    """

    def __init__(
        self, settings: Settings, staging: Path, data_dir: Path, quota_left: int | None = None
    ) -> None:
        caps = [c for c in (settings.job_output_bytes or None, quota_left) if c is not None]
        # The tenant's storage quota binds too: what it has left when the job starts.
        self.by_quota = quota_left is not None and quota_left == min(caps)
        self.cap: int | None = min(caps) if caps else None
        self.min_free = settings.min_free_disk_bytes
        self.settings, self.staging, self.data_dir = settings, staging, data_dir

    def problem(self, min_free: int | None = None) -> str | None:
        if self.cap is not None and _bytes_in(self.staging) > self.cap:
            return self.over_cap()
        need = self.min_free if min_free is None else min_free
        if need and shutil.disk_usage(self.data_dir).free < need:
            return disk_full_message(self.settings)
        return None

    def check(self) -> None:
        found = self.problem()
        if found:
            raise OutputRefused(found)

    def check_total(self, size: int) -> None:
        if self.cap is not None and size > self.cap:
            raise OutputRefused(self.over_cap())

    def explain_failure(self) -> str | None:
        """After the engine failed: was it the cap or a (nearly) full disk?"""
        if self.cap is not None and _bytes_in(self.staging) >= self.cap:
            return self.over_cap()
        return self.problem(max(self.min_free, _NEARLY_FULL_BYTES))

    def throttled(self) -> Callable[[], None]:
        last = {"at": time.monotonic()}

        def watch() -> None:
            now = time.monotonic()
            if now - last["at"] >= GUARD_EVERY_S:
                last["at"] = now
                self.check()

        return watch

    def over_cap(self) -> str:
        if self.by_quota:
            return (
                f"the job's results grew past {self.cap} bytes, what is left of this tenant's "
                "storage quota (DEADWEIGHT_TENANT_STORAGE_BYTES); delete jobs or uploads it "
                "no longer needs, or ask for fewer candidates (thresholds)"
            )
        return (
            f"the job's results grew past {self.cap} bytes, the most one job may publish "
            "(DEADWEIGHT_JOB_OUTPUT_BYTES); ask for fewer candidates (thresholds) or a "
            "smaller model"
        )


def _bytes_in(folder: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total
