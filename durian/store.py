"""Topics and the listener table on Kafka (the core's one confluent-kafka module).

The listeners topic is compacted and keyed by listener id: the latest record
of a key is the listener, a tombstone (``None`` value) deletes it. Reading the
table means reading the topic from the beginning to its end and applying
records in order; that is what :meth:`ListenerStore.read` does, and what the
stream processor does continuously.

confluent-kafka errors are translated into durian's errors here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

import msgspec
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

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
from durian.gap import GapGuard
from durian.kafka import confluent_config, gap_patience
from durian.records import DeliveryJob, ListenerSpec, Record, decode, encode, listener_key
from durian.topics import TopicNames, TopicSpec, topic_specs

__all__ = [
    "DeadLetter",
    "DeadLetters",
    "GuardedConsumer",
    "ListenerStore",
    "ListenerTable",
    "ReplayReport",
    "StoredRecord",
    "TopicAdmin",
    "TopicStatus",
    "decode_message",
    "read_since",
    "read_to_end",
]

logger = logging.getLogger(__name__)
#: librdkafka's own log lines (connects, disconnects) go through Python logging.
_kafka_log = logging.getLogger("durian.kafka.client")

Progress = Callable[[int, int], None]
"""Called as ``progress(records_read, records_expected)`` while a table is read."""

R = TypeVar("R", bound=Record)


def decode_message(msg: Message, type: type[R]) -> R:
    """Decode a consumed record; a ``DecodeError`` names its topic, partition and offset."""
    return decode(
        msg.value() or b"", type, topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
    )


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
        return self.admit(self.consumer.consume(num_messages=num_messages, timeout=timeout))

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
            logger.warning("cannot seek %s[%d] back to %d: %s", *tp, offset, exc.args[0].str())

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
            logger.warning("cannot look up where assigned partitions start: %s", exc.args[0].str())

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        self.guard.forget((p.topic, p.partition) for p in partitions)

    def position(self, tp: tuple[str, int]) -> int | None:
        return self.guard.next_offset(tp)

    def close(self) -> None:
        self.consumer.close()


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
            logger=_kafka_log,
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
        raise BrokerUnavailable(f"cannot read the topics: {exc.args[0].str()}") from None
    finally:
        consumer.close()


@dataclass(frozen=True)
class TopicStatus:
    name: str
    action: str  # "created" | "exists"
    partitions: int
    config: dict[str, str]
    warning: str = ""


class TopicAdmin:
    """Creates and inspects durian's topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin = AdminClient(confluent_config(settings, "admin", logger=_kafka_log))

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Raise ``BrokerUnavailable`` unless the broker answers within ``timeout``."""
        try:
            self._admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"no Kafka broker answered at {self.settings.bootstrap_servers} within "
                f"{timeout:.0f} s ({exc.args[0].str()}); is it running? "
                "`make run` starts the embedded one"
            ) from None

    def ensure(
        self, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
    ) -> list[TopicStatus]:
        """Create every missing topic; leave existing ones as they are. Idempotent."""
        wanted = list(topic_specs(self.settings) if specs is None else specs)
        self.wait_ready(timeout)
        existing = self._admin.list_topics(timeout=timeout).topics
        new = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.config,
            )
            for spec in wanted
            if spec.name not in existing
        ]
        created: set[str] = set()
        if new:
            for name, future in self._admin.create_topics(new, request_timeout=timeout).items():
                try:
                    future.result(timeout)
                    created.add(name)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise DurianError(
                            f"cannot create topic {name}: {exc.args[0].str()}"
                        ) from None
        metadata = self._admin.list_topics(timeout=timeout).topics
        configs = self._configs([spec.name for spec in wanted], timeout)
        statuses = []
        for spec in wanted:
            partitions = len(metadata[spec.name].partitions) if spec.name in metadata else 0
            config = configs.get(spec.name, {})
            warning = ""
            if partitions != spec.partitions:
                warning = f"has {partitions} partitions, settings ask for {spec.partitions}"
            for key, value in spec.config.items():
                if key == "cleanup.policy" and config.get(key, value) != value:
                    warning = f"{key} is {config.get(key)!r}, durian needs {value!r}"
            statuses.append(
                TopicStatus(
                    spec.name,
                    "created" if spec.name in created else "exists",
                    partitions,
                    config,
                    warning,
                )
            )
        return statuses

    def _configs(self, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
        out: dict[str, dict[str, str]] = {}
        for resource, future in self._admin.describe_configs(
            resources, request_timeout=timeout
        ).items():
            try:
                entries = future.result(timeout)
            except KafkaException:
                continue
            out[resource.name] = {
                key: entry.value
                for key, entry in entries.items()
                if key in ("cleanup.policy", "retention.ms") and entry.value is not None
            }
        return out


@dataclass
class ListenerTable:
    """The listener table as read from the topic: live listeners plus what was unreadable."""

    listeners: dict[str, ListenerSpec] = field(default_factory=dict)
    invalid: list[DecodeError] = field(default_factory=list)
    records: int = 0
    tombstones: int = 0


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
            self._producer = Producer(
                confluent_config(self.settings, "table-writer", logger=_kafka_log)
            )
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, on_delivery=self._delivered
                )
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise PublishError(f"cannot write to {self.topic}: {exc.args[0].str()}") from None
        self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            key = msg.key()
            self._errors.append(f"{key.decode() if key else '?'}: {err.str()}")

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

    def read(self, progress: Progress | None = None, timeout: float = 120.0) -> ListenerTable:
        """Read the whole topic to its end and apply every record and tombstone."""
        consumer = Consumer(
            confluent_config(
                self.settings,
                "reader",
                logger=_kafka_log,
                **{"group.id": f"{self.settings.topic_prefix}.reader.{uuid.uuid4().hex}"},
            )
        )
        try:
            return self._read(
                GuardedConsumer(consumer, self.settings, "listeners"), progress, timeout
            )
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc.args[0].str()}") from None
        finally:
            consumer.close()

    def _read(
        self, reader: GuardedConsumer, progress: Progress | None, timeout: float
    ) -> ListenerTable:
        consumer = reader.consumer
        metadata = consumer.list_topics(self.topic, timeout=min(timeout, 15.0))
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise DurianError(
                f"the listeners topic {self.topic} does not exist; run `durian topics create`"
            )
        # Start each partition at its low watermark: an explicit offset starts
        # fetching at once, where OFFSET_BEGINNING costs an extra offset lookup.
        partitions, expected = [], 0
        for number in topic.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, number), timeout=10.0
            )
            partitions.append(TopicPartition(self.topic, number, low))
            expected += max(0, high - low)
        table = ListenerTable()

        def batch_read() -> None:
            if progress is not None:
                progress(table.records, max(expected, table.records))

        for msg in read_to_end(reader, partitions, timeout, after_batch=batch_read):
            self._apply(table, msg)
        return table

    @staticmethod
    def _apply(table: ListenerTable, msg: Message) -> None:
        table.records += 1
        raw_key = msg.key()
        key = raw_key.decode(errors="replace") if raw_key else ""
        value = msg.value()
        if value is None:
            table.tombstones += 1
            table.listeners.pop(key, None)
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
            table.invalid.append(exc)
            table.listeners.pop(key, None)
            return
        table.listeners[key] = listener

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


# -- dead letters ---------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letters topic: a job that will not be tried again by itself."""

    partition: int
    offset: int
    timestamp: float
    """When it became a dead letter (Unix time, the record's timestamp)."""
    job: DeliveryJob | None
    problem: DecodeError | None = None
    """Set instead of ``job`` when the record cannot be decoded."""


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    """Reason -> job ids not replayed (listener deleted, listener disabled)."""


class DeadLetters:
    """The dead-letters topic: list, replay and purge.

    A log cannot forget single records, so purging moves a mark: the
    committed offsets of the ``<prefix>.dlq`` group. Listing and replaying
    start at the mark; the records before it stay on the broker until the
    topic's retention removes them.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.topic = self.names.dead
        self.group = self.names.group("dlq")

    def _consumer(self) -> Consumer:
        return Consumer(
            confluent_config(self.settings, "reader", logger=_kafka_log, **{"group.id": self.group})
        )

    def read(self, timeout: float = 120.0) -> list[DeadLetter]:
        """Every dead letter after the purge mark, oldest first per partition."""
        consumer = self._consumer()
        try:
            marks = self._marks(consumer)
            assignment = [TopicPartition(self.topic, p, off) for p, off in marks.items()]
            reader = GuardedConsumer(consumer, self.settings, "dead letters")
            return [self._letter(msg) for msg in read_to_end(reader, assignment, timeout)]
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc.args[0].str()}") from None
        finally:
            consumer.close()

    def _marks(self, consumer: Consumer) -> dict[int, int]:
        """partition -> where reading starts: the purge mark, or the low watermark."""
        metadata = consumer.list_topics(self.topic, timeout=15.0)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise DurianError(
                f"the dead-letters topic {self.topic} does not exist; run `durian topics create`"
            )
        parts = [TopicPartition(self.topic, p) for p in sorted(topic.partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10.0)}
        marks = {}
        for tp in parts:
            low, _ = consumer.get_watermark_offsets(tp, timeout=10.0)
            marks[tp.partition] = max(low, committed.get(tp.partition, -1))
        return marks

    @staticmethod
    def _letter(msg: Message) -> DeadLetter:
        stamp = msg.timestamp()[1] / 1000
        try:
            job = decode_message(msg, DeliveryJob)
        except DecodeError as exc:
            return DeadLetter(msg.partition() or 0, msg.offset() or 0, stamp, None, exc)
        return DeadLetter(msg.partition() or 0, msg.offset() or 0, stamp, job)

    def replay(
        self, letters: Iterable[DeadLetter], listeners: dict[str, ListenerSpec], timeout: float = 30
    ) -> ReplayReport:
        """Send dead letters to the deliveries topic again, as attempt 1 with the same job id
        (the same ``webhook-id``) and the listener as it is now: a fixed URL or a new secret
        applies. Jobs whose listener was deleted or is disabled are skipped."""
        report = ReplayReport()
        producer = Producer(confluent_config(self.settings, "writer", logger=_kafka_log))
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(err.str())

        for letter in letters:
            job = letter.job
            if job is None:
                continue
            listener = listeners.get(job.listener.id)
            if listener is None or not listener.active:
                reason = "listener deleted" if listener is None else "listener disabled"
                report.skipped.setdefault(reason, []).append(job.id)
                continue
            again = msgspec.structs.replace(
                job, listener=listener, attempt=1, not_before=None, last_error=None, throttled=False
            )
            while True:
                try:
                    producer.produce(
                        self.names.deliveries,
                        key=listener_key(listener.id),
                        value=encode(again),
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            report.replayed.append(job.id)
        left = producer.flush(timeout)
        if left or errors:
            raise PublishError(
                f"replay incomplete: {left} job(s) unacknowledged, {len(errors)} refused "
                f"({'; '.join(errors[:3])}); replaying again is safe (delivered jobs are skipped)"
            )
        return report

    def purge(self, before: float | None = None) -> int:
        """Move the mark past every dead letter (older than ``before``, when given).

        Returns how many letters were purged.
        """
        letters = self.read()
        if before is not None:
            letters = [letter for letter in letters if letter.timestamp < before]
        marks: dict[int, int] = {}
        for letter in letters:
            marks[letter.partition] = max(marks.get(letter.partition, 0), letter.offset + 1)
        if not marks:
            return 0
        consumer = self._consumer()
        try:
            consumer.commit(
                offsets=[TopicPartition(self.topic, p, off) for p, off in marks.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot move the purge mark: {exc.args[0].str()}") from None
        finally:
            consumer.close()
        return len(letters)
