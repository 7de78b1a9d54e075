"""The Faust app: events joined with the listener table become delivery jobs.

For each event on ``<prefix>.events``: decode it (an undecodable record is
logged with its location and parked on ``<prefix>.parked``), find the active
listeners of its hook whose conditions hold, and send one ``DeliveryJob`` per
listener to ``<prefix>.deliveries``, keyed by listener id, with the stable job
id of (event id, listener id). Processing is at least once: Faust flushes the
producer before it commits an event's offset, and the agent awaits each send
before it moves on, so a job is on the broker before its event counts as done.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import faust

from durian import conf
from durian.exceptions import DecodeError
from durian.kafka import faust_options
from durian.records import DeliveryJob, Event, decode, encode, job_id, listener_key
from durian.topics import TopicNames
from stream_processor.tables import ListenerTable

__all__ = ["StreamApp", "create_app"]

logger = logging.getLogger(__name__)


class StreamApp(faust.App):
    """faust.App without Faust's framework fixups: its Django fixup would import the
    site's settings whenever DJANGO_SETTINGS_MODULE is set, and this role runs
    without Django."""

    def _init_fixups(self) -> list[Any]:
        return []


def create_app(settings: conf.Settings, *, datadir: str | None = None) -> faust.App:
    names = TopicNames(settings.topic_prefix)
    app = StreamApp(
        names.group("stream"),
        datadir=datadir or tempfile.mkdtemp(prefix="durian-stream-"),
        topic_partitions=settings.events_partitions,
        **faust_options(settings),
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw", "internal": False}
    events = app.topic(names.events, partitions=settings.events_partitions, **raw)
    deliveries = app.topic(names.deliveries, partitions=settings.deliveries_partitions, **raw)
    parked = app.topic(names.parked, partitions=1, **raw)
    listeners_topic = app.topic(names.listeners, partitions=settings.listeners_partitions, **raw)
    table = ListenerTable(
        app,
        name="listeners",
        beacon=app.tables.beacon,
        partitions=settings.listeners_partitions,
        changelog_topic=listeners_topic,
        standby_buffer_size=1,
        recovery_buffer_size=1,
        is_global=True,
        key_type=bytes,
        value_type=bytes,
    )
    app.tables.add(table)
    app.listener_table = table  # type: ignore[attr-defined]

    async def route(stream: faust.StreamT[Any]) -> None:
        async for record in stream.events():
            message = record.message
            try:
                event = decode(
                    message.value,
                    Event,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
            except DecodeError as exc:
                logger.error("parking an undecodable event: %s", exc)
                await parked.send(
                    key=message.key,
                    value=message.value,
                    headers={
                        "durian-error": str(exc).encode(),
                        "durian-source": exc.location.encode(),
                    },
                )
                continue
            for listener in table.index.match(event):
                job = DeliveryJob(id=job_id(event.id, listener.id), event=event, listener=listener)
                await deliveries.send(key=listener_key(listener.id), value=encode(job))

    app.agent(events, name=f"{names.prefix}.route")(route)
    return app
