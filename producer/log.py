"""The delivery log: attempts from Kafka into the site's database, with retention.

``AttemptLog.run()`` consumes ``<prefix>.attempts`` in the consumer group
``<prefix>.log`` (run one ``manage.py durian_log`` per site; more share the
work), inserts each batch in one statement and commits the offsets after the
rows are in: a crash re-reads at most one batch, and the ``source`` column
(topic, partition, offset) makes the re-read rows no-ops. A record that cannot
be decoded is logged with its location and skipped. Rows older than
``retention_days`` are deleted every ``prune_every`` seconds.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from django.utils import timezone

from durian import conf
from durian.exceptions import DecodeError
from durian.kafka import confluent_config, error_text
from durian.reading import GuardedConsumer
from durian.records import Attempt, decode_message
from durian.topics import TopicNames
from producer.models import DeliveryAttempt

__all__ = ["AttemptLog"]

logger = logging.getLogger(__name__)


class AttemptLog:
    def __init__(
        self, settings: conf.Settings, *, retention_days: float = 30, prune_every: float = 600
    ) -> None:
        names = TopicNames(settings.topic_prefix)
        self.topic = names.attempts
        self.retention = timedelta(days=retention_days)
        self.prune_every = prune_every
        self.stopping = False
        self._consumer = Consumer(
            confluent_config(
                settings,
                "consumer",
                **{"group.id": names.group("log"), "enable.partition.eof": True},
            )
        )
        #: Reads every record in order even where the broker skips one (``durian.gap``).
        self._reader = GuardedConsumer(self._consumer, settings, "delivery log")
        self._assigned: set[int] = set()
        self._at_end: set[int] = set()

    def run(self, *, drain: bool = False) -> int:
        """Store attempts until ``stop()`` (or, with ``drain``, until every partition is
        read to its end). Returns how many rows were written."""
        self._consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        written, last_prune = 0, 0.0
        try:
            while not self.stopping:
                batch = self._reader.consume(num_messages=500, timeout=0.5)
                written += self._store(batch)
                if time.monotonic() - last_prune > self.prune_every:
                    self.prune()
                    last_prune = time.monotonic()
                if drain and self._assigned and self._at_end >= self._assigned:
                    break
        finally:
            self._consumer.close()
        return written

    def stop(self) -> None:
        self.stopping = True

    def _store(self, batch: list[Message]) -> int:
        rows = []
        for msg in batch:
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(msg.partition() or 0)
                else:
                    logger.error("attempts consumer: %s", error_text(error))
                continue
            self._at_end.discard(msg.partition() or 0)
            location = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
            try:
                attempt = decode_message(msg, Attempt)
            except DecodeError as exc:
                logger.error("skipping an unreadable attempt record: %s", exc)
                continue
            rows.append(
                DeliveryAttempt(
                    job_id=attempt.job_id,
                    listener_id=attempt.listener_id,
                    event_id=attempt.event_id,
                    hook=attempt.hook,
                    attempt=attempt.attempt,
                    at=attempt.at,
                    outcome=attempt.outcome,
                    status_code=attempt.status_code,
                    latency_ms=attempt.latency_ms,
                    error=attempt.error or "",
                    response_excerpt=attempt.response_excerpt,
                    source=location,
                )
            )
        if rows:
            DeliveryAttempt.objects.bulk_create(rows, ignore_conflicts=True)
        # Commit where reading goes on, not the consumer's stored offsets: those can be
        # past a hole that is being read again.
        positions = [
            TopicPartition(self.topic, p, offset)
            for p in sorted({msg.partition() or 0 for msg in batch if msg.error() is None})
            if (offset := self._reader.position((self.topic, p))) is not None
        ]
        if positions:
            try:
                self._consumer.commit(offsets=positions, asynchronous=False)
            except KafkaException as exc:
                logger.warning("offset commit failed (will retry): %s", error_text(exc))
        return len(rows)

    def prune(self) -> int:
        """Delete rows older than the retention; returns how many."""
        cutoff = timezone.now() - self.retention
        deleted, _ = DeliveryAttempt.objects.filter(at__lt=cutoff).delete()
        if deleted:
            logger.info("delivery log: %d attempt(s) older than %s deleted", deleted, cutoff)
        return deleted

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = {p.partition for p in partitions}
        self._at_end.clear()
        self._reader.expect_assigned(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned = set()
        self._reader.forget(partitions)
