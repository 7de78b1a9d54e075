"""The delivery worker's writes to Kafka, as futures the event loop can await.

Jobs go to retry tiers and dead letters, attempts to the attempts topic, and
the unreadable to the parked topic, all through one confluent-kafka producer.
``send`` returns a future that resolves when the broker has the record (or
fails with ``PublishError``); ``serve()`` runs the producer's delivery
callbacks in the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from durian import conf
from durian.exceptions import PublishError
from durian.kafka import confluent_config, error_text, produce
from durian.records import DeliveryJob, encode, job_key

__all__ = ["Writer"]

Headers = dict[str, str | bytes | None]


class Writer:
    def __init__(self, settings: conf.Settings) -> None:
        self.producer = Producer(confluent_config(settings, "writer"))

    def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers | None = None
    ) -> asyncio.Future[None]:
        """Write one record; the future resolves when the broker has it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(PublishError(f"{topic}: {error_text(err)}"))

        try:
            produce(self.producer, topic, value, key=key, headers=headers, on_delivery=delivered)
        except PublishError as exc:
            future.set_exception(exc)
        return future

    def send_job(self, topic: str, job: DeliveryJob, **changes: Any) -> asyncio.Future[None]:
        """Write a job (a copy with ``changes``), keyed by its listener and object."""
        record = msgspec.structs.replace(job, **changes) if changes else job
        return self.send(topic, job_key(job.listener_id, job.event), encode(record))

    def forward(
        self, topic: str, message: Message, landed: Callable[[KafkaError | None], None]
    ) -> bool:
        """Copy a consumed record to ``topic`` as it is; ``landed(error)`` is called once the
        broker answered. False when it could not even be queued."""
        try:
            produce(
                self.producer, topic, message.value(), key=message.key(),
                headers=message.headers(), on_delivery=lambda err, _msg: landed(err),
            )  # fmt: skip
        except PublishError:
            return False
        return True

    async def serve(self) -> None:
        """Run delivery callbacks in the event loop thread, until cancelled."""
        while True:
            self.producer.poll(0)
            await asyncio.sleep(0.005)

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)
