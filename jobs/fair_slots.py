"""A fair semaphore for asyncio: slots shared between tenants by turns, not by arrival.

Validation slots are few (`VALIDATION_CONCURRENCY` per API process). With a plain
semaphore, a tenant that sends four slow uploads holds both slots and queues ahead of every
other tenant; here a freed slot goes to the waiting tenant with the fewest slots in use
(then the one that has waited longest), so another tenant's small upload waits for one
validation at most, not for a backlog.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class _Waiter:
    tenant: str
    order: int
    granted: asyncio.Future[None]


@dataclass
class FairSlots:
    limit: int
    _busy: Counter[str] = field(default_factory=Counter)
    _waiting: list[_Waiter] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    async def acquire(self, tenant: str, timeout: float) -> None:
        """Take a slot for `tenant`, waiting at most `timeout` seconds.

        Raises:
            TimeoutError: no slot came free in time (nothing is held).
        """
        if self._in_use() < self.limit and not self._waiting:
            self._busy[tenant] += 1
            return
        waiter = _Waiter(tenant, next(self._order), asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.granted), timeout)
        except BaseException:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.granted.done():  # granted as the wait ended: give it back
                self.release(tenant)
            raise

    def release(self, tenant: str) -> None:
        self._busy[tenant] -= 1
        if self._busy[tenant] <= 0:
            del self._busy[tenant]
        while self._waiting and self._in_use() < self.limit:
            waiter = min(self._waiting, key=lambda w: (self._busy[w.tenant], w.order))
            self._waiting.remove(waiter)
            self._busy[waiter.tenant] += 1
            waiter.granted.set_result(None)

    def _in_use(self) -> int:
        return sum(self._busy.values())
