"""Where a site's events and listeners go: Kafka, or inline in this process.

Chosen once per hook, the way Django chooses a cache or a session backend:
``backend_for(hook)`` answers the hook's ``inline`` attribute, else the
``inline`` setting, and the rest of ``producer`` calls the backend it gets
without asking again.

* ``KafkaBackend`` (the default): an event is written to the outbox table in
  the transaction that fired it and published by ``manage.py durian_relay``
  (``producer.outbox``), or, with ``outbox`` off, produced to the events topic
  from this process after the commit; a listener is a record (a tombstone
  deletes it) on the compacted listeners topic.
* ``InlineBackend`` (the seed's ``async = False``, for development and a site's
  own tests): listeners live in this process, and after the commit each event
  is matched and POSTed right here, through the same request builder,
  transport, address guard and limits as the delivery workers (``producer.inline``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Protocol

from django.db import transaction

from durian import conf
from durian.exceptions import EventTooLarge, PublishError
from durian.listener_store import ListenerStore
from durian.records import Event, ListenerSpec, encode, event_key
from durian.topics import TopicNames
from producer import inline, outbox
from producer.conf import get_settings
from producer.publish import announce_hooks, publisher

__all__ = [
    "Backend",
    "InlineBackend",
    "KafkaBackend",
    "backend_for",
    "delete_listener",
    "listener_store",
]


class Backend(Protocol):
    def send(self, event: Event, *, using: str | None = None) -> None:
        """Deliver ``event`` once the current transaction (on ``using``) commits."""

    def save_listener(self, listener: ListenerSpec) -> None: ...

    def delete_listener(self, listener_id: str) -> None: ...


class _Chooses(Protocol):
    @property
    def inline(self) -> bool | None: ...


_store: ListenerStore | None = None
_store_pid = 0
_lock = threading.Lock()


def listener_store() -> ListenerStore:
    """This process's listener store for the current settings (new after a fork or a
    settings change; its producer is created on first write)."""
    global _store, _store_pid
    settings = get_settings()
    with _lock:
        if _store is None or _store_pid != os.getpid() or _store.settings is not settings:
            if _store is not None and _store_pid == os.getpid():
                _store.close()
            _store, _store_pid = ListenerStore(settings), os.getpid()
        return _store


def encoded(event: Event, settings: conf.Settings) -> bytes:
    """The event as it goes on the events topic; ``EventTooLarge`` over the limit."""
    value = encode(event)
    if len(value) > settings.max_event_bytes:
        raise EventTooLarge(
            f"the {event.hook!r} event is {len(value):,} bytes encoded, more than "
            f"max_event_bytes ({settings.max_event_bytes:,}); send less (the hook's "
            "provides_args or prepare_payload), or raise max_event_bytes together with "
            "Kafka's message.max.bytes"
        )
    return value


class KafkaBackend:
    def __init__(self) -> None:
        self._announced: conf.Settings | None = None

    def send(self, event: Event, *, using: str | None = None) -> None:
        settings = get_settings()
        key = event_key(event.hook, event.object_id if event.object_id is not None else event.id)
        value = encoded(event, settings)
        if settings.outbox:  # the relay announces the hooks and publishes
            outbox.write(key, value, using=using)
            return
        if self._announced is not settings:  # once per process (and settings)
            self._announced = settings
            announce_hooks(settings)
        topic = TopicNames(settings.topic_prefix).events
        transaction.on_commit(lambda: _publish_now(topic, key, value), using=using, robust=True)

    def save_listener(self, listener: ListenerSpec) -> None:
        listener_store().put(listener)

    def delete_listener(self, listener_id: str) -> None:
        listener_store().delete(listener_id)


def _publish_now(topic: str, key: bytes, value: bytes) -> None:
    """The direct path, after the commit: a failure is logged and counted by the
    publisher, never raised into the request or the transaction's other callbacks."""
    with contextlib.suppress(PublishError):  # logged at ERROR by the publisher
        publisher().publish(topic, key, value)


class InlineBackend:
    def send(self, event: Event, *, using: str | None = None) -> None:
        settings = get_settings()
        encoded(event, settings)  # the same limit as on Kafka
        transaction.on_commit(lambda: inline.deliver(event, settings), using=using)

    def save_listener(self, listener: ListenerSpec) -> None:
        inline.put(listener)

    def delete_listener(self, listener_id: str) -> None:
        inline.delete(listener_id)

    def holds(self, listener_id: str) -> bool:
        return listener_id in inline.listeners


KAFKA = KafkaBackend()
INLINE = InlineBackend()


def backend_for(hook: _Chooses | None = None) -> Backend:
    """The backend of ``hook`` (its ``inline`` attribute, else the ``inline`` setting)."""
    choice = None if hook is None else hook.inline
    return INLINE if (get_settings().inline if choice is None else choice) else KAFKA


def delete_listener(listener_id: str) -> None:
    """Delete a listener wherever it lives (an inline one is forgotten)."""
    (INLINE if INLINE.holds(listener_id) else KAFKA).delete_listener(listener_id)
