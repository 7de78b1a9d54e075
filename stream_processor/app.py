"""The Faust app: events joined with the listener table become delivery jobs.

For each event on ``<prefix>.events``: decode it (an undecodable record is
logged with its location and parked on ``<prefix>.parked``), find the active
listeners of its hook whose conditions hold, and send one ``DeliveryJob`` per
listener to ``<prefix>.deliveries``, keyed by listener and object
(``job_key``), with the stable job id of (event id, listener id).

Processing is at least once: jobs are handed to librdkafka
(``stream_processor.writer``), Faust flushes that writer before it commits an
event's offset, and a job the broker refuses stops the worker, so no event is
committed past a job that was not written.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from typing import Any

import faust
from faust.types import TransportT
from mode.utils.queues import ThrowableQueue

from durian import conf
from durian.exceptions import DecodeError, PublishError
from durian.kafka import faust_options, gap_patience, stream_fetch_wait_ms
from durian.records import DeliveryJob, Event, decode, encode, job_key
from durian.topics import TopicNames
from stream_processor.consumer import GuardedTransport
from stream_processor.tables import ListenerTable
from stream_processor.writer import JobWriter

__all__ = ["StreamApp", "StreamWorker", "create_app"]

logger = logging.getLogger(__name__)


class StreamWorker(faust.Worker):
    """Faust's worker without its terminal spinner. To spin on every log record, the
    spinner sets the root logger to DEBUG for the life of the process, so each job paid
    for a debug record nobody reads (measured: 14 % of a busy stream worker's time)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)


class StreamApp(faust.App):
    """faust.App with four corrections.

    * No framework fixups: Faust's Django fixup would import the site's settings
      whenever DJANGO_SETTINGS_MODULE is set, and this role runs without Django.
    * Stream buffers are never cleared when flow resumes. Faust clears them by
      default, but its fetcher has already counted the buffered messages as read:
      when a worker starts (or a rebalance ends) while events are buffered, the
      buffer is dropped, the partition is re-fetched from the committed offset, and
      the re-fetched copies below the "read" mark are discarded as seen. Those events
      were never processed: measured, 1 to 9 of 30 events produced while the worker
      was down were lost in about a third of restarts. Kept buffers are processed
      instead; a buffered event of a partition that moved to another worker is
      skipped by Faust's generation check, and that worker reads it again.
    * Its consumer's fetch wait follows the settings (Faust hard-codes 1500 ms: on the
      embedded broker, which answers a fetch only when that wait is over, the route
      agent saw each event ~400 ms late on average; ``durian.kafka.stream_fetch_wait_ms``).
    * Its consumer reads every record even where the broker hands out a later one
      first (``stream_processor.consumer``; ``gap_patience`` says how long it waits
      for a hole to fill).
    * Its consumer's "seek to committed" after a rebalance or recovery also rewinds a
      partition that has no committed offset yet, to its beginning: Faust relies on
      that seek to re-read records it dropped while flow stopped, and aiokafka skips
      such partitions (``GuardedConsumerThread.seek_to_committed``).
    """

    gap_patience: float = 0.0
    #: How long a fetch waits for records (``durian.kafka.stream_fetch_wait_ms``).
    fetch_wait_ms: int = 1500

    def _init_fixups(self) -> list[Any]:
        return []

    def _new_transport(self) -> TransportT:
        return GuardedTransport(self.conf.broker_consumer, self)

    def FlowControlQueue(
        self, maxsize: int | None = None, *, clear_on_resume: bool = False
    ) -> ThrowableQueue[Any]:
        return super().FlowControlQueue(maxsize=maxsize, clear_on_resume=False)


def create_app(settings: conf.Settings, *, datadir: str | None = None) -> faust.App:
    names = TopicNames(settings.topic_prefix)
    app = StreamApp(
        names.group("stream"),
        datadir=datadir or tempfile.mkdtemp(prefix="durian-stream-"),
        topic_partitions=settings.events_partitions,
        Worker=StreamWorker,
        **faust_options(settings),
    )
    app.gap_patience = gap_patience(settings)
    app.fetch_wait_ms = stream_fetch_wait_ms(settings)
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw", "internal": False}
    events = app.topic(names.events, partitions=settings.events_partitions, **raw)
    listeners_topic = app.topic(names.listeners, partitions=settings.listeners_partitions, **raw)
    table = ListenerTable(
        app,
        name="listeners",
        beacon=app.tables.beacon,
        partitions=settings.listeners_partitions,
        changelog_topic=listeners_topic,
        standby_buffer_size=1,
        # Only with 1 does Faust resume a global table's partitions after recovery (it
        # would stop following the listeners topic); the preload leaves little to recover.
        recovery_buffer_size=1,
        is_global=True,
        key_type=bytes,
        value_type=bytes,
    )
    app.tables.add(table)
    app.listener_table = table  # type: ignore[attr-defined]

    crashing: set[asyncio.Task[None]] = set()

    def crash(error: PublishError) -> None:
        """A record the broker refused (after the client's own retries) stops the worker,
        loudly: its event must be read again, not committed past (the writer's flush,
        which comes before every commit, raises it too)."""
        logger.critical("a delivery job was not written (%s); stopping the worker", error)
        crashing.add(task := asyncio.ensure_future(app.crash(error)))
        task.add_done_callback(crashing.discard)

    writer = JobWriter(settings, on_failure=crash)
    app.job_writer = writer  # type: ignore[attr-defined]

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
                writer.write(
                    names.parked,
                    message.key,
                    message.value,
                    headers={"durian-error": str(exc), "durian-source": exc.location},
                )
                continue
            for listener in table.index.match(event):
                job = DeliveryJob.of(event, listener)
                writer.write(names.deliveries, job_key(listener.id, event), encode(job))
            writer.serve()

    app.agent(events, name=f"{names.prefix}.route")(route)
    return app
