"""Publishing records from Django: one confluent-kafka producer per process.

``publish()`` queues a record and returns at once; the broker's answer comes
back in a delivery callback. A failed delivery is logged at ERROR, counted,
and raised as ``PublishError`` by the next ``flush()`` (also called at exit),
so a broken broker is never silent. The producer is re-created after a fork
(librdkafka handles are not fork-safe).

The produce path itself (a full local queue, a refused record) is
``durian.kafka.produce``, shared with every other writer.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from django.core.signals import setting_changed
from django.dispatch import receiver

from durian import conf
from durian.exceptions import PublishError
from durian.kafka import confluent_config, error_text, produce
from durian.records import HookSpec, encode
from durian.topics import TopicNames
from producer.conf import get_settings
from producer.registry import hooks

__all__ = ["Publisher", "announce_hooks", "flush", "publisher", "reset"]

logger = logging.getLogger(__name__)


@dataclass
class PublishStats:
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Publisher:
    """Wraps one ``confluent_kafka.Producer``; thread-safe; fork-aware."""

    def __init__(self, settings: conf.Settings) -> None:
        self.settings = settings
        self.stats = PublishStats()
        self._producer: Producer | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._unreported: list[str] = []

    @property
    def producer(self) -> Producer:
        if self._producer is None or self._pid != os.getpid():
            with self._lock:
                if self._producer is None or self._pid != os.getpid():
                    self._producer = Producer(confluent_config(self.settings, "producer"))
                    self._pid = os.getpid()
        return self._producer

    def publish(self, topic: str, key: bytes, value: bytes, *, block: float = 5.0) -> None:
        """Queue one record. Raises ``PublishError`` if the local queue stays full for
        ``block`` seconds or the record is refused outright (e.g. too large)."""
        producer = self.producer
        try:
            produce(producer, topic, value, key=key, on_delivery=self._on_delivery, block=block)
        except PublishError as exc:
            self._fail(str(exc))
            raise
        self.stats.queued += 1
        producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.stats.delivered += 1
            return
        self._fail(f"{msg.topic()}[{msg.partition()}]: {error_text(err)}")

    def _fail(self, reason: str) -> None:
        logger.error("durian could not publish a record: %s", reason)
        self.stats.failed += 1
        self.stats.errors.append(reason)
        del self.stats.errors[:-20]
        self._unreported.append(reason)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait for every queued record; raise ``PublishError`` for any that failed."""
        if self._producer is not None and self._pid == os.getpid():
            left = self._producer.flush(timeout)
            if left:
                self._fail(f"{left} record(s) not acknowledged within {timeout:.0f} s")
        failures, self._unreported = self._unreported, []
        if failures:
            raise PublishError(
                f"{len(failures)} record(s) were not published: " + "; ".join(failures[:5])
            )


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher, built from the Django settings on first use."""
    global _publisher
    if _publisher is None:
        with _publisher_lock:
            if _publisher is None:
                _publisher = Publisher(get_settings())
    return _publisher


def flush(timeout: float = 10.0) -> None:
    """Flush this process's publisher (if it published anything)."""
    if _publisher is not None:
        _publisher.flush(timeout)


def reset() -> None:
    """Forget the publisher (settings changed); queued records are flushed first."""
    global _publisher
    old, _publisher = _publisher, None
    if old is not None:
        try:
            old.flush(5.0)
        except PublishError:
            logger.exception("records were lost while the durian settings changed")


def announce_hooks(settings: conf.Settings) -> list[str]:
    """Queue a record for each registered hook on the hooks topic (``durian.hook_store``);
    the names announced."""
    topic = TopicNames(settings.topic_prefix).hooks
    now = datetime.now(UTC)
    names = []
    for hook in hooks:
        spec = HookSpec(name=hook.name, fields=tuple(hook.fields()),
                        description=hook.description, declared_at=now)  # fmt: skip
        publisher().publish(topic, hook.name.encode(), encode(spec))
        names.append(hook.name)
    return names


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: Any) -> None:
    if setting == "DURIAN":
        reset()


@atexit.register
def _flush_at_exit() -> None:
    try:
        flush(10.0)
    except PublishError:
        logger.exception("durian records were not published before exit")
