"""The delivery worker: consume jobs, POST them concurrently, commit only what is finished.

Jobs of one partition run concurrently and finish out of order, so offsets
are committed only below the lowest job still in flight (``OffsetTracker``).
A job counts as finished when its outcome is safely on Kafka: the attempt
record, and for a failure the job on its retry tier (or the dead letters).
SIGTERM stops consuming, lets in-flight jobs finish, and commits.

confluent-kafka runs in worker threads (``consume`` blocks); its delivery
callbacks run in the event loop thread through ``poll(0)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from delivery_workers.dispatch import AttemptResult, Dispatcher
from delivery_workers.offsets import TP, OffsetTracker
from durian import conf
from durian.backoff import next_delay, retry_after_delay, tier_for
from durian.exceptions import DecodeError, PublishError
from durian.kafka import confluent_config
from durian.records import Attempt, DeliveryJob, decode, encode, listener_key
from durian.topics import TopicNames

__all__ = ["DeliveryWorker"]

logger = logging.getLogger(__name__)
_kafka_log = logging.getLogger("durian.kafka.client")


class DeliveryWorker:
    """One process's share of the ``<prefix>.deliver`` consumer group."""

    def __init__(
        self,
        settings: conf.Settings,
        *,
        concurrency: int = 64,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.concurrency = concurrency
        self.dispatcher = dispatcher or Dispatcher(settings)
        self.clock = clock
        self.tracker = OffsetTracker()
        self.stopping = asyncio.Event()
        self.stats = {"delivered": 0, "retrying": 0, "dead": 0, "parked": 0}
        self._tasks: set[asyncio.Task[None]] = set()
        self._producer = Producer(confluent_config(settings, "producer", logger=_kafka_log))
        self._consumer = Consumer(
            confluent_config(
                settings, "consumer", logger=_kafka_log, **{"group.id": self.names.group("deliver")}
            )
        )

    # -- running --------------------------------------------------------------

    async def run(self) -> None:
        self._consumer.subscribe(
            [self.names.deliveries], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        poller = asyncio.create_task(self._poll_producer())
        committer = asyncio.create_task(self._commit_every(1.0))
        try:
            while not self.stopping.is_set():
                room = self.concurrency - len(self._tasks)
                if room <= 0:  # every slot busy: wait for one before taking more jobs
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch = await asyncio.to_thread(self._consumer.consume, room, 0.2)
                for message in batch:
                    self._start(message)
        finally:
            await self._drain()
            committer.cancel()
            self._commit()
            poller.cancel()
            self._producer.flush(10)
            await asyncio.to_thread(self._consumer.close)
            await self.dispatcher.aclose()

    def stop(self) -> None:
        self.stopping.set()

    async def _drain(self) -> None:
        if self._tasks:
            timeout = self.settings.delivery_timeout + 5
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()

    def _start(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.error("consumer error: %s", error.str())
            return
        tp: TP = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        self.tracker.add(tp, offset)
        task = asyncio.create_task(self._handle(message, tp, offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: Message, tp: TP, offset: int) -> None:
        try:
            await self._process(message)
        except Exception:
            # The loop boundary: log with the location and leave the offset
            # uncommitted, so the job is delivered again after a restart.
            logger.exception("job at %s[%s]@%s failed unexpectedly", tp[0], tp[1], offset)
            return
        self.tracker.done(tp, offset)

    async def _process(self, message: Message) -> None:
        value = message.value() or b""
        try:
            job = decode(
                value,
                DeliveryJob,
                topic=message.topic(),
                partition=message.partition(),
                offset=message.offset(),
            )
        except DecodeError as exc:
            logger.error("parking an undecodable delivery job: %s", exc)
            headers: dict[str, str | bytes | None] = {
                "durian-error": str(exc),
                "durian-source": exc.location,
            }
            await self._produce(self.names.parked, message.key() or b"", value, headers)
            self.stats["parked"] += 1
            return
        result = await self.dispatcher.attempt(job)
        await self._record(job, result)

    async def _record(self, job: DeliveryJob, result: AttemptResult) -> None:
        key = listener_key(job.listener.id)
        if result.ok:
            outcome = "delivered"
            follow_up = None
        else:
            delay = next_delay(
                job.attempt, self.settings.retry_schedule, self.settings.retry_jitter
            )
            if delay is None or not result.retryable:
                outcome = "dead"
                follow_up = (self.names.dead, msgspec.structs.replace(job, last_error=result.error))
            else:
                delay = retry_after_delay(delay, result.retry_after)
                outcome = "retrying"
                tier = tier_for(delay, self.settings.retry_schedule)
                retry = msgspec.structs.replace(
                    job,
                    attempt=job.attempt + 1,
                    not_before=self.clock() + delay,
                    last_error=result.error,
                )
                follow_up = (self.names.deliveries_retry(tier), retry)
        attempt = Attempt(
            job_id=job.id,
            listener_id=job.listener.id,
            event_id=job.event.id,
            hook=job.event.hook,
            attempt=job.attempt,
            at=datetime.now(UTC),
            outcome=outcome,  # type: ignore[arg-type]
            status_code=result.status_code,
            latency_ms=round(result.latency_ms, 3),
            error=result.error,
            response_excerpt=result.response_excerpt,
        )
        waits = [self._produce(self.names.attempts, key, encode(attempt))]
        if follow_up is not None:
            waits.append(self._produce(follow_up[0], key, encode(follow_up[1])))
        await asyncio.gather(*waits)
        self.stats[outcome] += 1
        if not result.ok:
            logger.info(
                "job %s to %s: attempt %d %s (%s)",
                job.id, job.listener.id, job.attempt, outcome, result.error,
            )  # fmt: skip

    # -- Kafka plumbing -------------------------------------------------------

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: dict[str, str | bytes | None] | None = None,
    ) -> asyncio.Future[None]:
        """Produce and return a future that resolves when the broker has the record."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if future.done():
                return
            if err is None:
                future.set_result(None)
            else:
                future.set_exception(PublishError(f"{topic}: {err.str()}"))

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                return future
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                future.set_exception(PublishError(f"{topic}: {exc.args[0].str()}"))
                return future

    async def _poll_producer(self) -> None:
        while True:
            self._producer.poll(0)
            await asyncio.sleep(0.005)

    async def _commit_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._commit()

    def _commit(self, tps: list[TP] | None = None) -> None:
        positions = self.tracker.committable(tps)
        if not positions:
            return
        offsets = [TopicPartition(topic, part, off) for (topic, part), off in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            logger.warning("offset commit failed (will retry): %s", exc.args[0].str())
            return
        self.tracker.mark_committed(positions)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._commit(tps)
        self.tracker.forget(tps)
        logger.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in tps))
