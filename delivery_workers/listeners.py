"""This worker's copy of the listener table: a job names its listener, and the worker
delivers with the listener as it is now.

The copy is read whole from the compacted listeners topic when the worker starts,
then followed: each turn of the consumer loop applies what has arrived
(``poll``). A job whose listener is missing from the copy, or older than the job
says, makes the copy read on to the topic's end as it is at that moment
(``current``); a listener still missing after that was deleted. So a URL changed,
a secret rotated, a header replaced or a listener disabled applies to every job
still queued, retries included, and no topic but the listeners topic carries a
secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from durian import conf
from durian.exceptions import BrokerUnavailable, DurianError
from durian.kafka import confluent_config, error_text
from durian.listener_store import ListenerSnapshot
from durian.reading import GuardedConsumer, from_the_start, read_to_end
from durian.records import ListenerSpec
from durian.topics import TopicNames

__all__ = ["ListenerView"]

logger = logging.getLogger(__name__)


class ListenerView:
    """The listener table as this worker knows it; ``current()`` is the way to ask."""

    def __init__(self, settings: conf.Settings) -> None:
        self.settings = settings
        self.topic = TopicNames(settings.topic_prefix).listeners
        self.table = ListenerSnapshot()
        group = f"{settings.topic_prefix}.reader.{uuid.uuid4().hex}"  # never commits
        self._reader = GuardedConsumer(
            Consumer(confluent_config(settings, "reader", **{"group.id": group})),
            settings,
            "listeners",
        )
        self._partitions: list[TopicPartition] = []
        #: One reader of the consumer at a time: ``poll`` skips its turn during a catch-up.
        self._busy = asyncio.Lock()

    def load(self, timeout: float = 300.0) -> int:
        """Read the whole table (blocking: run it in a thread). Returns its size."""
        try:
            start = from_the_start(self._reader.consumer, self.topic, min(timeout, 15.0))
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {error_text(exc)}") from None
        if start is None:
            raise DurianError(
                f"the listeners topic {self.topic} does not exist; run `durian topics create`"
            )
        self._partitions = start[0]
        for msg in read_to_end(self._reader, self._partitions, timeout):
            self.table.apply(msg)
        return len(self.table.listeners)

    def get(self, listener_id: str) -> ListenerSpec | None:
        return self.table.listeners.get(listener_id)

    def poll(self) -> None:
        """Apply the listener records that have arrived (never waits)."""
        if not self._busy.locked():
            self._apply_batch(self._reader.consume(1000, 0))

    async def current(self, listener_id: str, version: float) -> ListenerSpec | None:
        """The listener as it is now, at least at ``version``; ``None`` when it is deleted.
        Raises ``BrokerUnavailable`` when the topic's end cannot be reached to tell."""
        listener = self.get(listener_id)
        if listener is not None and listener.version >= version:
            return listener
        async with self._busy:
            listener = self.get(listener_id)  # another job's catch-up may have brought it
            if listener is not None and listener.version >= version:
                return listener
            await asyncio.to_thread(self._catch_up)
        return self.get(listener_id)

    def _catch_up(self, timeout: float = 10.0) -> None:
        """Read up to each partition's end as the broker tells it now."""
        ends = {}
        try:
            for tp in self._partitions:
                _, high = self._reader.consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=5.0, cached=False
                )
                ends[(tp.topic, tp.partition)] = high
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {error_text(exc)}") from None
        deadline = time.monotonic() + timeout
        while any((self._reader.position(tp) or 0) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"{self.topic} did not reach its end within {timeout} s")
            self._apply_batch(self._reader.consume(1000, 0.1))

    def _apply_batch(self, batch: list[Message]) -> None:
        for msg in batch:
            if msg.error() is None:
                self.table.apply(msg)

    def close(self) -> None:
        self._reader.close()
