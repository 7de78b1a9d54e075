"""Faust's Kafka consumer, made to read every record even where the broker skips one.

Faust consumes with aiokafka in a thread of its own; every record it reads, the
events of the route agent and the listener table's changelog alike, comes out of
``AIOKafkaConsumerThread._fetch_records``. That is where ``GuardedConsumerThread``
applies ``durian.gap.GapGuard``: before each fetch it takes every partition's
position (where the next record must start), and when a partition's records
begin past it or jump inside the batch, it keeps what came before the hole and
seeks the partition back to it. Faust never sees the records after a hole until
the hole is read, so its offsets, acks and commits never move past a record that
no stream has processed.

``GuardedTransport`` is aiokafka's transport with that consumer; ``StreamApp``
creates it instead of the one ``kafka://`` names.
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from durian.gap import GapGuard

__all__ = ["GuardedConsumer", "GuardedConsumerThread", "GuardedTransport"]

logger = logging.getLogger(__name__)

RecordMap = dict[TP, list[Any]]


class GuardedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka's consumer thread with a ``GapGuard`` on every fetch."""

    gap_guard: GapGuard

    def __post_init__(self) -> None:
        super().__post_init__()
        patience = getattr(self.app, "gap_patience", 0.0)
        self.gap_guard = GapGuard(patience, name="durian-stream")

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> RecordMap:
        guard = self.gap_guard
        if not guard.enabled:
            return dict(
                await super()._fetch_records(
                    consumer, active_partitions, timeout=timeout, max_records=max_records
                )
            )
        # Where each partition's next record must start. A fetch response is only
        # taken for a partition whose position equals the fetch's offset, and only a
        # seek moves a position without records being returned, so the records of a
        # partition start here unless the broker skipped one.
        assignment = consumer._subscription.subscription
        tps = set(active_partitions or ())
        if assignment is not None and assignment.assignment is not None:
            for tp in tps or assignment.assignment.tps:
                state = assignment.assignment.state_value(tp)
                if state is not None and state.has_valid_position:
                    guard.expect(tp, state.position)
        records = dict(
            await super()._fetch_records(
                consumer, active_partitions, timeout=timeout, max_records=max_records
            )
        )
        for tp in list(records):
            batch = records[tp]
            kept = guard.check(tp, [record.offset for record in batch])
            if kept == len(batch):
                continue
            if kept:
                records[tp] = batch[:kept]
            else:
                del records[tp]
            offset = guard.next_offset(tp)
            if offset is not None:
                consumer.seek(tp, offset)
        return records


class GuardedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> GuardedConsumerThread:
        return GuardedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class GuardedTransport(faust_aiokafka.Transport):
    Consumer = GuardedConsumer
