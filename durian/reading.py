"""Reading topics in order with confluent-kafka, on any broker.

``GuardedConsumer`` wraps a consumer so that it never skips a record, even on
a broker that hands one out before an earlier one is stored (``durian.gap``);
``read_to_end`` reads partitions to their ends with it; ``read_since`` reads
several topics from a moment on, for tools that look at them all
(``durian audit``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from durian.conf import Settings
from durian.exceptions import BrokerUnavailable
from durian.gap import GapGuard
from durian.kafka import confluent_config, error_text, gap_patience

__all__ = [
    "GuardedConsumer",
    "StoredRecord",
    "collector_paused",
    "from_the_start",
    "read_since",
    "read_to_end",
]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a topic's records are decoded in bulk.

    Every decoded record that is kept makes the collector walk everything kept so far,
    again and again: reading a million listeners took twice as long with it running.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class GuardedConsumer:
    """A confluent ``Consumer`` that reads every record of its partitions, in order, even
    from a broker that hands out a record before an earlier one is stored (``durian.gap``).

    ``consume()`` keeps what comes before a hole, drops the rest of that partition's
    batch and seeks back to the hole. Tell it where partitions start: ``expect_assigned``
    from an ``on_assign`` callback or after ``assign()``, ``expect`` after a seek of your
    own, ``forget`` on revocation. ``position(tp)`` is the offset after the last record
    handed out, the right one to commit once those records are done (the consumer's own
    stored offsets may already be past a hole).
    """

    def __init__(self, consumer: Consumer, settings: Settings, name: str = "") -> None:
        self.consumer = consumer
        self.guard = GapGuard(gap_patience(settings), name=name)

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        """Up to ``num_messages`` records, as soon as there is one (or ``[]`` after
        ``timeout``). librdkafka's own ``consume`` waits for the whole batch or the whole
        timeout: at 50 records/s that held each one ~100 ms on average."""
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        batch = [first]
        if num_messages > 1:
            batch += self.consumer.consume(num_messages=num_messages - 1, timeout=0)
        return self.admit(batch)

    def admit(self, batch: list[Message]) -> list[Message]:
        """The part of ``batch`` to process; error events pass, except the end of a
        partition whose hole is still open (its real end is further on)."""
        guard = self.guard
        if not batch:
            return batch
        offsets: dict[tuple[str, int], list[int]] = {}
        for msg in batch:
            if msg.error() is None:
                tp = (msg.topic() or "", msg.partition() or 0)
                seen = offsets.get(tp)
                if seen is None:
                    offsets[tp] = [msg.offset() or 0]
                else:
                    seen.append(msg.offset() or 0)
        keep: dict[tuple[str, int], int] = {}
        for tp, seen in offsets.items():
            kept = guard.check(tp, seen)
            if kept < len(seen):
                keep[tp] = kept
                self._seek(tp, guard.next_offset(tp))
        if not keep and not guard.holes_open():
            return batch  # the usual case: every record in order
        out = []
        for msg in batch:
            tp = (msg.topic() or "", msg.partition() or 0)
            if msg.error() is not None:
                if not guard.waiting(tp):
                    out.append(msg)
            elif tp not in keep:
                out.append(msg)
            elif keep[tp] > 0:
                keep[tp] -= 1
                out.append(msg)
        return out

    def _seek(self, tp: tuple[str, int], offset: int | None) -> None:
        if offset is None:
            return
        try:
            self.consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException as exc:
            # Not assigned any more: whoever reads it next starts at the committed offset.
            logger.warning("cannot seek %s[%d] back to %d: %s", *tp, offset, error_text(exc))

    def expect(self, tp: tuple[str, int], offset: int) -> None:
        self.guard.expect(tp, offset)

    def expect_assigned(self, partitions: list[TopicPartition], timeout: float = 10.0) -> None:
        """Where each partition starts: the offset the assignment names, else the group's
        committed offset, else the low watermark (``auto.offset.reset`` is earliest)."""
        unknown = []
        for p in partitions:
            if p.offset >= 0:
                self.guard.expect((p.topic, p.partition), p.offset)
            else:
                unknown.append(TopicPartition(p.topic, p.partition))
        try:
            committed = self.consumer.committed(unknown, timeout=timeout) if unknown else []
            for p in committed:
                if p.offset < 0:
                    p.offset, _ = self.consumer.get_watermark_offsets(p, timeout=timeout)
                self.guard.expect((p.topic, p.partition), p.offset)
        except KafkaException as exc:
            # The first record read sets the position instead: a hole right at the
            # start of such a partition would go unnoticed.
            logger.warning("cannot look up where assigned partitions start: %s", error_text(exc))

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        self.guard.forget((p.topic, p.partition) for p in partitions)

    def position(self, tp: tuple[str, int]) -> int | None:
        return self.guard.next_offset(tp)

    def close(self) -> None:
        self.consumer.close()


def from_the_start(
    consumer: Consumer, topic: str, timeout: float = 15.0
) -> tuple[list[TopicPartition], int] | None:
    """Every partition of ``topic`` at its low watermark, and how many records they
    hold; ``None`` when there is no such topic. An explicit offset starts fetching at
    once, where ``OFFSET_BEGINNING`` costs an extra offset lookup."""
    found = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return None
    partitions, records = [], 0
    for number in sorted(found.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10.0)
        partitions.append(TopicPartition(topic, number, low))
        records += max(0, high - low)
    return partitions, records


def read_to_end(
    reader: GuardedConsumer,
    partitions: list[TopicPartition],
    timeout: float,
    after_batch: Callable[[], None] | None = None,
) -> Iterator[Message]:
    """Assign ``partitions`` (at their offsets) and yield every record up to each one's end.

    The end is where fetches report it (``enable.partition.eof``), which is right on
    every broker; a listed end offset is not on tansu (see ``durian.kafka``).
    """
    reader.consumer.assign(partitions)
    reader.expect_assigned(partitions)
    pending = {(tp.topic, tp.partition) for tp in partitions}
    deadline = time.monotonic() + timeout
    topic = ", ".join(sorted({tp.topic for tp in partitions})) or "?"
    while pending:
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"reading {topic} did not reach its end within {timeout:.0f} s")
        for msg in reader.consume(num_messages=10_000, timeout=0.5):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic() or "", msg.partition() or 0))
                    continue
                raise KafkaException(err)
            yield msg
        if after_batch is not None:
            after_batch()


@dataclass(frozen=True)
class StoredRecord:
    """One record as read back from a topic, for tools that look at many topics at once."""

    topic: str
    partition: int
    offset: int
    timestamp: float
    """The record's timestamp (Unix time): when it was written."""
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def location(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _headers(msg: Message) -> dict[str, bytes]:
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return {
        name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs
    }


def read_since(
    settings: Settings, since: dict[str, float], timeout: float = 120.0
) -> dict[str, list[StoredRecord]]:
    """Every record of each topic written at ``since[topic]`` (Unix time) or later, up to
    its end, read with one consumer. A missing topic reads as empty."""
    out: dict[str, list[StoredRecord]] = {topic: [] for topic in since}
    consumer = Consumer(
        confluent_config(
            settings,
            "reader",
            **{"group.id": f"{settings.topic_prefix}.reader.{uuid.uuid4().hex}"},
        )
    )
    try:
        wanted = []
        metadata = consumer.list_topics(timeout=min(timeout, 15.0)).topics
        for topic, moment in since.items():
            found = metadata.get(topic)
            if found is None or found.error is not None:
                continue
            wanted += [TopicPartition(topic, p, int(moment * 1000)) for p in found.partitions]
        starts = [
            TopicPartition(tp.topic, tp.partition, tp.offset)
            for tp in consumer.offsets_for_times(wanted, timeout=min(timeout, 15.0))
            if tp.offset >= 0  # else nothing was written at or after that moment
        ] if wanted else []  # fmt: skip
        if not starts:
            return out
        reader = GuardedConsumer(consumer, settings, "audit")
        for msg in read_to_end(reader, starts, timeout):
            topic = msg.topic() or ""
            out[topic].append(
                StoredRecord(
                    topic,
                    msg.partition() or 0,
                    msg.offset() or 0,
                    msg.timestamp()[1] / 1000,
                    msg.key(),
                    msg.value(),
                    _headers(msg),
                )
            )
        return out
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read the topics: {error_text(exc)}") from None
    finally:
        consumer.close()
