"""Validation slots taken by turns between tenants, with a bounded wait."""

from __future__ import annotations

import asyncio

import pytest

from jobs.fair_slots import FairSlots


def test_a_freed_slot_goes_to_the_tenant_with_fewest_in_use() -> None:
    async def main() -> list[str]:
        slots, order = FairSlots(2), []

        async def use(tenant: str, hold: float) -> None:
            await slots.acquire(tenant, timeout=10)
            order.append(tenant)
            await asyncio.sleep(hold)
            slots.release(tenant)

        # Tenant a fills both slots and queues two more; b arrives last with one.
        tasks = [asyncio.create_task(use("a", 0.2)) for _ in range(4)]
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(use("b", 0.01)))
        await asyncio.gather(*tasks)
        return order

    order = asyncio.run(main())
    assert order[:3] == ["a", "a", "b"], order  # b goes before a's backlog


def test_a_wait_past_its_timeout_holds_nothing() -> None:
    async def main() -> FairSlots:
        slots = FairSlots(1)
        await slots.acquire("a", timeout=1)
        with pytest.raises(TimeoutError):
            await slots.acquire("b", timeout=0.05)
        slots.release("a")
        await slots.acquire("c", timeout=0.05)  # free at once: b no longer waits
        slots.release("c")
        return slots

    slots = asyncio.run(main())
    assert slots._in_use() == 0 and slots._waiting == []


def test_a_cancelled_waiter_gives_back_a_slot_it_was_just_granted() -> None:
    async def main() -> FairSlots:
        slots = FairSlots(1)
        await slots.acquire("a", timeout=1)
        waiting = asyncio.create_task(slots.acquire("b", timeout=5))
        await asyncio.sleep(0.01)
        slots.release("a")  # granted to b...
        waiting.cancel()  # ...whose request is cancelled before it runs again
        try:
            await waiting
        except asyncio.CancelledError:
            return slots  # the slot was given back
        slots.release("b")  # Python 3.11's wait_for may return instead: b holds the slot
        return slots

    slots = asyncio.run(main())
    assert slots._in_use() == 0
