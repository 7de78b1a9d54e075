"""The dead-letters topic: list, replay and purge jobs that will not be tried again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from durian.conf import Settings
from durian.exceptions import BrokerUnavailable, DecodeError, DurianError, PublishError
from durian.kafka import confluent_config, error_text, produce
from durian.reading import GuardedConsumer, read_to_end
from durian.records import DeliveryJob, ListenerSpec, decode_message, encode, job_key
from durian.topics import TopicNames

__all__ = ["DeadLetter", "DeadLetters", "ReplayReport"]


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
        return Consumer(confluent_config(self.settings, "reader", **{"group.id": self.group}))

    def read(self, timeout: float = 120.0) -> list[DeadLetter]:
        """Every dead letter after the purge mark, oldest first per partition."""
        consumer = self._consumer()
        try:
            marks = self._marks(consumer)
            assignment = [TopicPartition(self.topic, p, off) for p, off in marks.items()]
            reader = GuardedConsumer(consumer, self.settings, "dead letters")
            return [self._letter(msg) for msg in read_to_end(reader, assignment, timeout)]
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {error_text(exc)}") from None
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
        producer = Producer(confluent_config(self.settings, "writer"))
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(error_text(err))

        for letter in letters:
            job = letter.job
            if job is None:
                continue
            listener = listeners.get(job.listener_id)
            if listener is None or not listener.active:
                reason = "listener deleted" if listener is None else "listener disabled"
                report.skipped.setdefault(reason, []).append(job.id)
                continue
            again = msgspec.structs.replace(
                job, listener_version=listener.version, attempt=1, not_before=None,
                last_error=None, throttled=False,
            )  # fmt: skip
            produce(
                producer,
                self.names.deliveries,
                encode(again),
                key=job_key(listener.id, again.event),
                on_delivery=delivered,
            )
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
            raise BrokerUnavailable(f"cannot move the purge mark: {error_text(exc)}") from None
        finally:
            consumer.close()
        return len(letters)
