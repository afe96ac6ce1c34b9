"""Waiting for something the service does in its own time: a job, a model's inspection.

The first polls come quickly (a small job ends in a second or two), then the pace slows to
`interval`, so a long job costs the service one request per `interval`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from deadweight_client.errors import WaitTimeout

FIRST_POLL_S = 0.2


@dataclass
class Poll:
    """`timeout` None: wait for ever."""

    what: str  # "job 3f2a…", for the timeout's message
    timeout: float | None
    interval: float = 2.0
    started: float = field(default_factory=time.monotonic)
    _next: float = FIRST_POLL_S

    def delay(self, status: str) -> float:
        """Seconds until the next poll.

        Raises:
            WaitTimeout: the time given has run out (`status`: where things stand).
        """
        now = time.monotonic()
        if self.timeout is not None and now - self.started >= self.timeout:
            raise WaitTimeout(f"{self.what} is still {status} after {self.timeout:g} s")
        step, self._next = self._next, min(self._next * 2, self.interval)
        if self.timeout is None:
            return step
        return max(min(step, self.started + self.timeout - now), 0.0)

    def sleep_sync(self, status: str) -> None:
        time.sleep(self.delay(status))

    async def sleep_async(self, status: str) -> None:
        await asyncio.sleep(self.delay(status))
