"""The listener table on Kafka: write listener records, read the table back.

The listeners topic is compacted and keyed by listener id: the latest record
of a key is the listener, a tombstone (``None`` value) deletes it. Reading the
table means reading the topic from the beginning to its end and applying
records in order; that is what :meth:`ListenerStore.read` does, and what the
stream processor does continuously (``stream_processor.tables``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from durian.addresses import AddressPolicy
from durian.conf import Settings
from durian.exceptions import (
    BrokerUnavailable,
    DecodeError,
    DurianError,
    InvalidListener,
    ListenerNotFound,
    PublishError,
)
from durian.kafka import confluent_config, error_text, produce
from durian.reading import GuardedConsumer, collector_paused, from_the_start, read_to_end
from durian.records import ListenerSpec, decode_message, encode, listener_key
from durian.topics import TopicNames

__all__ = ["ListenerSnapshot", "ListenerStore", "Progress"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as ``progress(records_read, records_expected)`` while a table is read."""


@dataclass
class ListenerSnapshot:
    """The listener table as read from the topic: live listeners plus what was unreadable."""

    listeners: dict[str, ListenerSpec] = field(default_factory=dict)
    invalid: list[DecodeError] = field(default_factory=list)
    records: int = 0
    tombstones: int = 0

    def apply(self, msg: Message) -> None:
        """Apply one record of the listeners topic: a listener, or a tombstone that
        deletes one; an unreadable record is logged, counted and deletes its key."""
        self.records += 1
        raw_key = msg.key()
        key = raw_key.decode(errors="replace") if raw_key else ""
        value = msg.value()
        if value is None:
            self.tombstones += 1
            self.listeners.pop(key, None)
            return
        try:
            listener = decode_message(msg, ListenerSpec)
            if listener.id != key:
                raise DecodeError(
                    f"record key {key!r} differs from listener id {listener.id!r}",
                    topic=msg.topic(),
                    partition=msg.partition(),
                    offset=msg.offset(),
                )
        except DecodeError as exc:
            logger.warning("skipping unreadable listener record: %s", exc)
            self.invalid.append(exc)
            self.listeners.pop(key, None)
            return
        self.listeners[key] = listener


class ListenerStore:
    """Writes listener records and tombstones; reads the table back."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = TopicNames(settings.topic_prefix).listeners
        self._producer: Producer | None = None
        self._errors: list[str] = []

    # -- writing ------------------------------------------------------------

    def put(self, *listeners: ListenerSpec, timeout: float = 30.0) -> None:
        """Write listener records (create or update); raise ``PublishError`` unless all land.

        An active listener whose URL names an IP address the settings do not let
        deliveries reach is refused with ``InvalidListener``, and nothing is written.

        On the embedded broker the last record goes in a batch of its own, so
        that the topic's end offset is right for readers that recover by it
        (see ``durian.kafka``).
        """
        if not listeners:
            return
        policy = AddressPolicy.from_settings(self.settings)
        for listener in listeners:
            refusal = policy.url_refusal(listener.url) if listener.active else None
            if refusal is not None:
                raise InvalidListener(f"listener {listener.id}: {refusal}")
        *head, last = listeners
        for listener in head:
            self._produce(listener_key(listener.id), encode(listener))
        if head and self.settings.embedded:
            self._flush(timeout)
        self._produce(listener_key(last.id), encode(last))
        self._flush(timeout)

    def delete(self, listener_id: str, timeout: float = 30.0) -> None:
        """Write the tombstone that deletes ``listener_id``."""
        self._produce(listener_key(listener_id), None)
        self._flush(timeout)

    def _produce(self, key: bytes, value: bytes | None) -> None:
        if self._producer is None:
            self._producer = Producer(confluent_config(self.settings, "table-writer"))
        produce(self._producer, self.topic, value, key=key, on_delivery=self._delivered)
        self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            key = msg.key()
            self._errors.append(f"{key.decode() if key else '?'}: {error_text(err)}")

    def _flush(self, timeout: float) -> None:
        assert self._producer is not None
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if left:
            errors.append(f"{left} record(s) not acknowledged within {timeout:.0f} s")
        if errors:
            logger.error("writing to %s failed: %s", self.topic, "; ".join(errors[:5]))
            raise PublishError(
                f"{len(errors)} listener record(s) were not written to {self.topic}: "
                + "; ".join(errors[:5])
            )

    # -- reading ------------------------------------------------------------

    def read(self, progress: Progress | None = None, timeout: float = 120.0) -> ListenerSnapshot:
        """Read the whole topic to its end and apply every record and tombstone."""
        consumer = Consumer(
            confluent_config(
                self.settings,
                "reader",
                **{"group.id": f"{self.settings.topic_prefix}.reader.{uuid.uuid4().hex}"},
            )
        )
        try:
            return self._read(
                GuardedConsumer(consumer, self.settings, "listeners"), progress, timeout
            )
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {error_text(exc)}") from None
        finally:
            consumer.close()

    def _read(
        self, reader: GuardedConsumer, progress: Progress | None, timeout: float
    ) -> ListenerSnapshot:
        start = from_the_start(reader.consumer, self.topic, min(timeout, 15.0))
        if start is None:
            raise DurianError(
                f"the listeners topic {self.topic} does not exist; run `durian topics create`"
            )
        partitions, expected = start
        table = ListenerSnapshot()

        def batch_read() -> None:
            if progress is not None:
                progress(table.records, max(expected, table.records))

        with collector_paused():
            for msg in read_to_end(reader, partitions, timeout, after_batch=batch_read):
                table.apply(msg)
        return table

    def get(self, listener_id: str) -> ListenerSpec:
        """The live listener with that id, or ``ListenerNotFound``."""
        try:
            return self.read().listeners[listener_id]
        except KeyError:
            raise ListenerNotFound(f"no listener with id {listener_id!r}") from None

    # -- lifecycle ----------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._producer = None

    def __enter__(self) -> ListenerStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
