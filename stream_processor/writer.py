"""The stream worker's writes: delivery jobs and parked events, with confluent-kafka.

Faust's own producer (aiokafka) builds and sends every record in Python on the
worker's event loop: measured with py-spy, a third of a busy stream worker's
time. ``JobWriter`` hands each record to librdkafka instead, which batches and
sends in its own threads (the ``writer`` role of ``durian.kafka``: jobs are read
only by durian's confluent consumers).

At least once stays as it was: Faust flushes its producer before it commits an
offset, and ``FlushingProducer`` (Faust's producer as the stream worker's
transport creates it) first waits until the broker has every record this writer
was given. A record the broker refuses (after librdkafka's retries) makes that
flush raise, so no offset is committed past it, and stops the worker with a
critical log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer
from faust.transport.drivers import aiokafka as faust_aiokafka

from durian import conf
from durian.exceptions import PublishError
from durian.kafka import Headers, confluent_config, error_text, produce

__all__ = ["FlushingProducer", "JobWriter"]


class _Epoch:
    """The records written between two flushes, and how many the broker has not confirmed."""

    __slots__ = ("delivered", "in_flight", "writer")

    def __init__(self, writer: JobWriter) -> None:
        self.writer = writer
        self.in_flight = 0
        self.delivered = self._delivered  # bound once: the per-record callback

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.in_flight -= 1
        if err is not None:
            self.writer.refused(f"{msg.topic()}: {error_text(err)}")


class JobWriter:
    """Queues records with librdkafka; ``flush()`` waits for those queued before it.

    Writes go on while a flush waits (the agent does not stop for a commit), so a
    flush waits for its epoch -- the records queued before it began -- and not for
    the producer to be empty, which under steady load it never is.
    """

    def __init__(self, settings: conf.Settings, on_failure: Callable[[PublishError], None]) -> None:
        self.producer = Producer(confluent_config(settings, "writer"))
        self.on_failure = on_failure
        self.failure: PublishError | None = None
        self._epoch = _Epoch(self)
        self._sealed: list[_Epoch] = []

    def write(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None
    ) -> None:
        """Queue one record. Raises ``PublishError`` when it cannot even be queued."""
        if self.failure is not None:
            raise self.failure
        epoch = self._epoch
        produce(self.producer, topic, value, key=key, headers=headers, on_delivery=epoch.delivered)
        epoch.in_flight += 1

    def refused(self, reason: str) -> None:
        if self.failure is None:
            self.failure = PublishError(reason)
            self.on_failure(self.failure)

    def serve(self) -> None:
        """Run the delivery callbacks that are due (in the event loop's thread)."""
        self.producer.poll(0)

    async def flush(self) -> None:
        """Return once the broker has every record queued before this call; raise the
        first refusal instead."""
        self._sealed.append(self._epoch)
        self._epoch = _Epoch(self)
        waiting = list(self._sealed)
        while True:
            self.producer.poll(0)
            if self.failure is not None:
                raise self.failure
            if not any(epoch.in_flight for epoch in waiting):
                break
            await asyncio.sleep(0.001)
        self._sealed = [epoch for epoch in self._sealed if epoch.in_flight]


class FlushingProducer(faust_aiokafka.Producer):
    """Faust's producer, whose flush (before every commit) also flushes the ``JobWriter``
    the app names as ``job_writer``."""

    async def flush(self) -> None:
        writer: JobWriter | None = getattr(self.transport.app, "job_writer", None)
        if writer is not None:
            await writer.flush()
        await super().flush()
