"""Faust's Kafka consumer, made to read every record even where the broker skips one.

Faust consumes with aiokafka in a thread of its own; every record it reads, the
events of the route agent and the listener table's changelog alike, comes out of
``AIOKafkaConsumerThread._fetch_records``. That is where ``GuardedConsumerThread``
applies ``durian.gap.GapGuard``: before each fetch it takes every partition's
position (where the next record must start), and when a partition's records
begin past it or jump inside the batch, it keeps what came before the hole and
seeks the partition back to it. A fetch that raced a seek of Faust's or a
rebalance is not judged by the old positions: its first record sets the position.
Faust never sees the records after a hole until the hole is read, so its offsets,
acks and commits never move past a record that no stream has processed.

``GuardedTransport`` is aiokafka's transport with that consumer, and with a producer
whose flush waits for the stream worker's job writer (``stream_processor.writer``);
``StreamApp`` creates it instead of the one ``kafka://`` names.
"""

from __future__ import annotations

import logging
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from durian.gap import GapGuard
from stream_processor.writer import FlushingProducer

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
        #: Bumped by every seek Faust makes, so that a fetch that raced one is not
        #: mistaken for a hole (its records start where the seek put the partition).
        self._seeks = 0

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes 1500 ms. The fetcher is built at start() from this attribute.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_wait_ms", 1500)
        return consumer

    async def _fetch_records(
        self,
        consumer: aiokafka.AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> RecordMap:
        guard = self.gap_guard
        fetch = super()._fetch_records
        if not guard.enabled:
            return dict(await fetch(consumer, active_partitions, timeout, max_records))
        # Where each partition's next record must start. A fetch response is only
        # taken for a partition whose position equals the fetch's offset, and only a
        # seek or a new assignment moves a position without records being returned,
        # so the records of a partition start here unless the broker skipped one.
        subscription = consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        seeks = self._seeks
        starts: dict[TP, int] = {}
        if assignment is not None:
            for tp in active_partitions or assignment.tps:
                state = assignment.state_value(tp)
                if state is not None and state.has_valid_position:
                    starts[tp] = state.position
        records = dict(await fetch(consumer, active_partitions, timeout, max_records))
        subscription = consumer._subscription.subscription
        moved = seeks != self._seeks or (
            subscription is None or subscription.assignment is not assignment
        )
        for tp in list(records):
            if moved or tp not in starts:
                guard.forget([tp])  # unknown: the first record sets the position
            else:
                guard.expect(tp, starts[tp])
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

    # Faust's seeks: each one bumps ``_seeks``.

    def seek(self, partition: TP, offset: int) -> None:
        self._seeks += 1
        super().seek(partition, offset)

    async def seek_to_committed(self) -> Any:
        """Seek every partition to its committed offset, and one without a committed
        offset to its beginning (the consumer's ``earliest`` reset).

        Faust calls this after a rebalance or recovery to return to the last safe
        point: records fetched meanwhile may have been taken from the client's buffer
        and dropped (flow stopped in the middle of a batch). aiokafka skips partitions
        whose committed offset is missing or 0, so their position stayed past those
        records: measured, with two stream workers starting while events were being
        written, one worker's first 450 events per partition were never processed in 3
        of 8 runs.
        """
        self._seeks += 1
        committed = await super().seek_to_committed()
        consumer = self._ensure_consumer()
        unset = []
        for tp, offset in committed.items():
            if offset is None or offset < 0:
                unset.append(tp)
            elif offset == 0:
                consumer.seek(tp, 0)
        if unset:
            await self.seek_to_beginning(*unset)
        return committed

    async def seek_to_beginning(self, *partitions: Any) -> None:
        self._seeks += 1
        await super().seek_to_beginning(*partitions)

    async def seek_wait(self, partitions: Any) -> None:
        self._seeks += 1
        await super().seek_wait(partitions)


class GuardedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> GuardedConsumerThread:
        return GuardedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class GuardedTransport(faust_aiokafka.Transport):
    Consumer = GuardedConsumer
    Producer = FlushingProducer
