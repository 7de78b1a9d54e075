"""The transactional outbox: events leave the site through its own database.

``write()`` inserts an event into ``durian_outbox`` inside the transaction that
fired it, so the event exists exactly when the change does: a rollback takes
both away, a commit keeps both, whatever happens to the web process or the
broker afterwards.

``Relay`` (``manage.py durian_relay``) publishes the rows to the events topic
in ``id`` order and deletes each only once Kafka has acknowledged it. A relay
that dies, or a broker that stays away, leaves the rows where they are; they go
again later with the same event ids, and the stream processor gives a re-sent
event the same job ids, which the delivery workers deliver once.

Several relays share the work without mixing up the order of one object's
events. Rows are spread over ``SHARDS`` shards by their key (one object's
events share one), and on PostgreSQL a relay publishes only the shards it holds
an advisory lock on. Every relay also holds a shared lock that counts it, takes
``ceil(SHARDS / relays)`` shards and gives back its surplus between batches, so
a relay that starts gets work within ``rebalance_every`` seconds, and the
shards of one that stops or dies (its session ends, its locks go) are taken
over as fast: a rolling restart never stops the flow. A shard changes hands
only between batches, after its rows are acknowledged and deleted. On other
databases a relay takes every shard: run one.

On PostgreSQL with psycopg 3 a trigger (migration 0002) wakes the relays when
rows commit (``LISTEN durian_outbox``); otherwise they look every
``poll_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from durian import conf
from durian.exceptions import PublishError
from durian.kafka import confluent_config, error_text, produce
from durian.topics import TopicNames
from producer import publish
from producer.models import OutboxEvent
from producer.publish import announce_hooks

__all__ = ["SHARDS", "OutboxStatus", "Relay", "shard_of", "status", "write"]

logger = logging.getLogger(__name__)

#: Shards of the outbox: at most this many relays share the work.
SHARDS = 32
#: The advisory-lock space of the relays (``pg_locks.classid``): one lock per shard,
#: and the shared lock ``_MEMBER`` that each running relay holds.
_LOCKS = 0x64757269
_MEMBER = SHARDS
#: Kafka's answers that no retry changes: the row is marked refused and passed over.
_FOR_GOOD = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD}

Row = tuple[int, int, bytes, bytes]  # id, shard, key, value
_INSERT = (
    f"INSERT INTO {OutboxEvent._meta.db_table} (shard, key, value, created_at, refused) "
    "VALUES (%s, %s, %s, %s, '')"
)


def shard_of(key: bytes) -> int:
    """The shard of an event key (``<hook>:<pk>``): one object's events share one."""
    return zlib.crc32(key) % SHARDS


def write(key: bytes, value: bytes, *, using: str | None = None) -> None:
    """Put an event into the outbox in the current transaction on ``using``."""
    with connections[using or DEFAULT_DB_ALIAS].cursor() as cursor:  # a third of the ORM's cost
        cursor.execute(_INSERT, [shard_of(key), key, value, timezone.now()])


@dataclass(frozen=True)
class OutboxStatus:
    waiting: int
    refused: int
    oldest_age: float | None
    """Seconds the oldest waiting event has waited (``None``: none waits)."""


def status(using: str = DEFAULT_DB_ALIAS) -> OutboxStatus:
    rows = OutboxEvent.objects.using(using)
    oldest = rows.filter(refused="").order_by("id").values_list("created_at", flat=True).first()
    age = None if oldest is None else (timezone.now() - oldest).total_seconds()
    return OutboxStatus(rows.filter(refused="").count(), rows.exclude(refused="").count(), age)


class Relay:
    """Publishes the outbox to the events topic; one per process, any number of processes."""

    def __init__(
        self,
        settings: conf.Settings,
        *,
        using: str = DEFAULT_DB_ALIAS,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        rebalance_every: float = 2.0,
    ) -> None:
        self.settings = settings
        self.topic = TopicNames(settings.topic_prefix).events
        self.table = OutboxEvent._meta.db_table
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.rebalance_every = rebalance_every
        self.using = using
        self.sharing = connections[using].vendor == "postgresql"
        self._db: BaseDatabaseWrapper | None = None
        self.held: set[int] = set() if self.sharing else set(range(SHARDS))
        self.published = 0
        self.stopping = False
        self._joined = False
        self._listening = False
        self._next_rebalance = 0.0
        self._producer: Producer | None = None
        self._failures = 0

    # -- the loop ---------------------------------------------------------------

    def run(self, *, drain: bool = False) -> int:
        """Publish until ``stop()`` (with ``drain``: until no row of its shards waits).
        Returns how many events it published."""
        self._announce()
        self._connect()
        while not self.stopping:
            try:
                if time.monotonic() >= self._next_rebalance:
                    self._rebalance()
                rows = self._take()
                if rows:
                    self._publish(rows)
                    continue
                if drain and self.held:
                    break
                self._wait(self.poll_interval)
            except DatabaseError as exc:
                logger.warning("durian relay: the database failed (%s); connecting again", exc)
                self._reset_db()
                self._sleep(1.0)
        self.close()
        return self.published

    def _announce(self) -> None:
        """Declare the site's hooks on the hooks topic, as a direct-path site does with
        its first event (the CLI checks new listeners against them)."""
        try:
            announce_hooks(self.settings)
            publish.flush(10.0)
        except PublishError as exc:
            logger.warning("durian relay: the hooks were not announced (%s)", exc)

    def _connect(self) -> None:
        """Meet the broker before the first event waits for it (a first produce to a
        topic waits for its metadata, about half a second)."""
        try:
            self.producer.list_topics(self.topic, timeout=5.0)
        except KafkaException as exc:
            logger.warning("durian relay: the broker does not answer yet (%s)", error_text(exc))

    def stop(self) -> None:
        self.stopping = True

    def close(self) -> None:
        """Leave: the shard locks go with the session; pending records are not waited for
        (their rows stay and go again)."""
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._joined = self._listening = False

    # -- the database -----------------------------------------------------------

    @property
    def db(self) -> BaseDatabaseWrapper:
        """A connection of the relay's own, made in the thread that runs it: never inside
        a web request's transaction, and the session that holds the shard locks."""
        if self._db is None:
            self._db = connections.create_connection(self.using)
        return self._db

    def _take(self) -> list[Row]:
        if not self.held:
            return []
        sql = f"SELECT id, shard, key, value FROM {self.table} WHERE refused = ''"
        params: list[Any] = []
        if len(self.held) < SHARDS:
            sql += f" AND shard IN ({', '.join(['%s'] * len(self.held))})"
            params += sorted(self.held)
        sql += " ORDER BY id LIMIT %s"
        with self.db.cursor() as cursor:
            cursor.execute(sql, [*params, self.batch_size])
            return [(i, s, bytes(k), bytes(v)) for i, s, k, v in cursor.fetchall()]

    def _delete(self, ids: Sequence[int]) -> None:
        if ids:
            marks = ", ".join(["%s"] * len(ids))
            with self.db.cursor() as cursor:
                cursor.execute(f"DELETE FROM {self.table} WHERE id IN ({marks})", list(ids))

    def _refuse(self, row_id: int, reason: str) -> None:
        logger.error(
            "durian relay: Kafka refused outbox event %s for good (%s); it stays in the "
            "outbox, passed over, until `manage.py durian_relay --retry-refused`",
            row_id,
            reason,
        )
        with self.db.cursor() as cursor:
            cursor.execute(f"UPDATE {self.table} SET refused = %s WHERE id = %s", [reason, row_id])

    def _rebalance(self) -> None:
        """Hold ``ceil(SHARDS / relays)`` shards: give back the surplus, take free ones."""
        self._next_rebalance = time.monotonic() + self.rebalance_every
        if not self.sharing:
            return
        with self.db.cursor() as cursor:
            if not self._joined:
                cursor.execute(
                    "SELECT pg_advisory_lock_shared(%s::int, %s::int)", [_LOCKS, _MEMBER]
                )
                self._joined = True
                self._listen()
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                [_LOCKS, _MEMBER],
            )
            relays = max(1, cursor.fetchone()[0])
            target = math.ceil(SHARDS / relays)
            for shard in sorted(self.held, reverse=True)[: max(0, len(self.held) - target)]:
                cursor.execute("SELECT pg_advisory_unlock(%s::int, %s::int)", [_LOCKS, shard])
                self.held.discard(shard)
            start = random.randrange(SHARDS)
            for shard in [(start + n) % SHARDS for n in range(SHARDS)]:
                if len(self.held) >= target:
                    break
                if shard not in self.held:
                    cursor.execute("SELECT pg_try_advisory_lock(%s::int, %s::int)", [_LOCKS, shard])
                    if cursor.fetchone()[0]:
                        self.held.add(shard)

    def _listen(self) -> None:
        if hasattr(self.db.connection, "notifies"):  # psycopg 3 (3.3 keeps what came early)
            with self.db.cursor() as cursor:
                cursor.execute("LISTEN durian_outbox")
            self._listening = True

    def _wait(self, seconds: float) -> None:
        if not self._listening:
            self._sleep(seconds)
            return
        for _ in self.db.connection.notifies(timeout=seconds, stop_after=1):
            pass

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def _reset_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(DatabaseError):
                self._db.close()
        self._db = None
        self._joined = self._listening = False
        if self.sharing:
            self.held = set()
        self._next_rebalance = 0.0

    # -- Kafka ------------------------------------------------------------------

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                confluent_config(
                    self.settings,
                    "producer",
                    **{"client.id": f"{self.settings.topic_prefix}-relay"},
                )
            )
        return self._producer

    def _publish(self, rows: list[Row]) -> None:
        """Publish ``rows``; delete each acknowledged one, unless an earlier row of its
        shard failed (it goes again after that one, in order)."""
        outcome: dict[int, KafkaError | None] = {}
        refused: dict[int, str] = {}

        def delivered(row_id: int, err: KafkaError | None, msg: Message) -> None:
            outcome[row_id] = err

        producer = self.producer
        for row_id, _shard, key, value in rows:
            try:
                produce(producer, self.topic, value, key=key,
                        on_delivery=functools.partial(delivered, row_id))  # fmt: skip
            except PublishError as exc:
                refused[row_id] = str(exc)
        while len(outcome) + len(refused) < len(rows) and not self.stopping:
            producer.flush(1.0)  # each record ends by message.timeout.ms at the latest

        done, blocked, failure = [], set(), ""
        for row_id, shard, _key, _value in rows:
            err = outcome.get(row_id)
            if row_id in refused or (err is not None and err.code() in _FOR_GOOD):
                self._refuse(row_id, refused.get(row_id) or error_text(err))  # type: ignore[arg-type]
            elif shard in blocked or row_id not in outcome or err is not None:
                blocked.add(shard)
                failure = failure or (error_text(err) if err is not None else "not acknowledged")
            else:
                done.append(row_id)
        self._delete(done)
        self.published += len(done)
        if blocked and not self.stopping:
            self._broker_failed(len(rows) - len(done), failure)
        elif self._failures:
            logger.warning("durian relay: the broker acknowledges again; publishing the backlog")
            self._failures = 0

    def _broker_failed(self, count: int, reason: str) -> None:
        """Start again with a new producer after a pause that grows to 10 s."""
        if self._failures == 0 or self._failures % 10 == 0:
            logger.warning(
                "durian relay: %d event(s) were not acknowledged by %s (%s); they stay "
                "in the outbox and go again",
                count,
                self.settings.bootstrap_servers,
                reason,
            )
        self._failures += 1
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None
        self._sleep(min(10.0, 0.5 * 2 ** min(self._failures, 5)))
