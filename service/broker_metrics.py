"""The broker's figures on /metrics: messages waiting in each queue, read at scrape time.

The store's `deadweight_queue_depth` counts jobs the store says are queued; the broker's own
count tells whether their messages are there too. The two differ when messages were lost
(the reaper sends them again) or while a burst is being taken up, and an inspection queue
that keeps growing means no inspection worker is running. A scrape while the broker is down
still answers, with `deadweight_broker_up 0`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobs.queue import QUEUES, Queue

log = logging.getLogger("deadweight.api")

# Short: a scrape must not hang on a broker that is down (Prometheus' own timeout is 10 s).
_TIMEOUT_SECONDS = 1.0


class BrokerCollector(Collector):
    """Asks the broker for each queue's waiting messages on every scrape."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("deadweight_broker_up", "1 when the broker answered this scrape.")
        waiting = GaugeMetricFamily(
            "deadweight_broker_messages",
            "Messages waiting in a broker queue, not yet taken by a worker, by the queue's name "
            "in `deadweight worker --queues` (jobs, inspections).",
            labels=["queue"],
        )
        try:
            for name, broker_queue in QUEUES.items():
                count = self._queue.waiting(_TIMEOUT_SECONDS, queue=broker_queue)
                waiting.add_metric([name], count)
        except Exception as exc:
            log.warning("/metrics: the broker did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield waiting
