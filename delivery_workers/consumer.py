"""The delivery worker: consume jobs, POST them concurrently, commit only what is finished.

One consumer group reads the deliveries topic and every retry tier
(``<prefix>.deliveries.retry.<delay>``). The loop here only drives; the rules
live beside it, each testable alone:

* ``decide`` -- what happens to a job: when it is due, what Redis's verdict
  means, and after an attempt the record to write and where the job goes next;
* ``tiers`` -- which tier a wait rides, and which tier partitions are paused
  until their head is due;
* ``endpoints`` -- this worker's view of each listener: its HTTP slots, the jobs
  it holds, breakers seen open;
* ``health`` -- what every worker shares in Redis: deduplication, claims,
  breakers, rate limits; ``dispatch`` -- the HTTP attempt; ``writer`` -- the
  writes to Kafka; ``offsets`` -- which offsets may be committed.

A job: read -> due? -> its endpoint can take it? -> admitted by Redis -> an HTTP
slot -> attempt -> settled in Redis -> attempt record and the job's next copy on
Kafka -> finished. Jobs of one partition finish out of order, so offsets are
committed only below the lowest job still in flight. A job that fails
unexpectedly is parked, so its partition keeps moving. SIGTERM stops consuming,
lets in-flight jobs finish while still polling (a rolling restart's new worker
joins meanwhile), and commits.

confluent-kafka runs in worker threads (``consume`` blocks); its delivery
callbacks run in the event loop thread through ``Writer.serve``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from delivery_workers.endpoints import Endpoints
from delivery_workers.health import EndpointHealth
from delivery_workers.jobs import JobRunner
from delivery_workers.listeners import ListenerView
from delivery_workers.offsets import TP, OffsetTracker
from delivery_workers.tiers import RetryTiers
from delivery_workers.writer import Writer
from durian import conf
from durian.http.dispatch import Dispatcher
from durian.kafka import confluent_config, error_text
from durian.reading import GuardedConsumer
from durian.records import listener_of
from durian.topics import TopicNames

__all__ = ["DeliveryWorker"]

logger = logging.getLogger(__name__)


class DeliveryWorker:
    """One process's share of the ``<prefix>.deliver`` consumer group."""

    def __init__(
        self,
        settings: conf.Settings,
        *,
        concurrency: int = 64,
        dispatcher: Dispatcher | None = None,
        health: EndpointHealth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        #: Jobs in hand at most (waiting for an HTTP slot, a short wait, or Kafka).
        self.max_pending = max(concurrency * 4, 2048)
        self.clock = clock
        self.tracker = OffsetTracker()
        self.tiers = RetryTiers(settings)
        each = settings.endpoint_concurrency
        self.endpoints = Endpoints(each, pending=each * 16)
        self.writer = Writer(settings)
        self.listeners = ListenerView(settings)
        self.jobs = JobRunner(
            settings,
            concurrency=concurrency,
            dispatcher=dispatcher or Dispatcher(settings),
            health=health or EndpointHealth(settings, clock=clock),
            writer=self.writer,
            tiers=self.tiers,
            endpoints=self.endpoints,
            listeners=self.listeners,
            clock=clock,
        )
        self.stats = self.jobs.stats
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set whenever a job's task ends: room for another job.
        self._room = asyncio.Event()
        self._consumer = Consumer(
            confluent_config(settings, "consumer", **{"group.id": self.names.group("deliver")})
        )
        #: Reads every record in order even where the broker skips one (``durian.gap``).
        self._reader = GuardedConsumer(self._consumer, settings, "deliver")

    # -- running --------------------------------------------------------------

    async def run(self) -> None:
        count = await asyncio.to_thread(self.listeners.load)
        logger.info("read %d listener(s) from %s", count, self.listeners.topic)
        self._consumer.subscribe(
            [self.names.deliveries, *self.tiers.topics],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        writer = asyncio.create_task(self.writer.serve())
        committer = asyncio.create_task(self._commit_every(1.0))
        try:
            while not self.stopping.is_set():
                self._resume(self.tiers.due(self.clock()))
                self.listeners.poll()
                room = self.max_pending - len(self._tasks)
                if room < self.max_pending // 8:  # enough in hand: wait for room to read a batch
                    # (asyncio.wait over thousands of tasks costs O(tasks) per wake-up:
                    # measured, a fifth of a saturated worker's time.)
                    self._room.clear()
                    await self._room.wait()
                    continue
                batch = await asyncio.to_thread(self._reader.consume, min(room, 500), 0.2)
                for message in batch:
                    self._take(message)
        finally:
            await self._drain()
            committer.cancel()
            self._commit()
            writer.cancel()
            self.writer.flush(10)
            await asyncio.to_thread(self._consumer.close)
            await self.jobs.aclose()
            gaps = self._reader.guard.stats
            logger.info(
                "stopped: %s; %d late record(s) read in order, %d gap(s) skipped",
                ", ".join(f"{name} {count}" for name, count in self.stats.items()),
                gaps.filled, gaps.accepted,
            )  # fmt: skip

    def stop(self) -> None:
        self.stopping.set()

    async def _drain(self) -> None:
        """Let the jobs in hand finish, still a good member of the group.

        Every partition is paused (one assigned meanwhile, too) and the consumer keeps
        polling, so a rebalance is served at once: in a rolling restart the new worker
        joins while this one finishes. A worker that stopped polling here held every
        rebalance until it left, and its own leaving could then hang in ``close()``
        (measured: the new worker was never assigned).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.delivery_timeout + self.tiers.short_wait + 5
        try:
            self._consumer.pause(self._consumer.assignment())
        except KafkaException as exc:
            logger.warning("cannot pause before stopping: %s", error_text(exc))
        while self._tasks and loop.time() < deadline:
            # Serves rebalance callbacks; a record fetched before the pause is not taken
            # (not tracked, so never committed: its partition's owner reads it again).
            await asyncio.to_thread(self._consumer.consume, 100, 0.1)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=0.05)
        for task in self._tasks:
            task.cancel()

    def _take(self, message: Message) -> None:
        """A record read: wait for its tier, pass it by, or start its task."""
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.error("consumer error: %s", error_text(error))
            return
        tp: TP = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        if self.tiers.paused(tp):
            return  # fetched before the pause; read again from the head on resume
        now = self.clock()
        wait = self.tiers.wait_for_head(tp[0], message.timestamp()[1] / 1000, now)
        if wait > 0:
            self._pause(tp, offset, now + wait)
            return
        epoch = self.tracker.add(tp, offset)
        if epoch is None:
            return  # its partition was revoked while the batch was read: the new owner reads it
        key = listener_of(message.key())
        wait_out = self.endpoints.pass_by(
            key, now, self.tiers.short_wait, self.settings.delivery_timeout
        ) if key else None  # fmt: skip
        if wait_out is not None and self._forward(message, tp, offset, epoch, wait_out):
            return
        self._spawn(message, key, tp, offset, epoch)

    def _forward(self, message: Message, tp: TP, offset: int, epoch: int, wait: float) -> bool:
        """Move a job to the tier that fits its wait, as it is (no decoding, no task, no
        Redis): a broken or slow endpoint's backlog then costs one produce per job and
        round, and healthy endpoints keep the worker's time."""
        topic = self.tiers.topic_for(wait)

        def landed(err: KafkaError | None) -> None:
            if err is None:
                self.tracker.done(tp, offset, epoch)
            else:  # deliver it the long way instead
                logger.warning(
                    "cannot move a job to %s (%s); handling it now", topic, error_text(err)
                )
                self._spawn(message, listener_of(message.key()), tp, offset, epoch)

        if not self.writer.forward(topic, message, landed):
            return False
        self.stats["deferred"] += 1
        return True

    def _spawn(self, message: Message, key: str, tp: TP, offset: int, epoch: int) -> None:
        """Start the job's task; ``key`` is its listener id (``listener_of`` its key)."""
        self.endpoints.hold(key)
        task = asyncio.create_task(self._handle(message, tp, offset, epoch))
        self._tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._room.set()
            self.endpoints.release(key)

        task.add_done_callback(finished)

    # -- retry tiers: pause a partition until its head is due ------------------

    def _pause(self, tp: TP, head: int, until: float) -> None:
        partition = TopicPartition(tp[0], tp[1], head)
        try:
            self._consumer.pause([partition])
            self._consumer.seek(partition)
        except KafkaException as exc:
            # Not paused: the head is read again at once, and tested again.
            logger.warning("cannot pause %s[%s]: %s", tp[0], tp[1], error_text(exc))
            return
        self._reader.expect(tp, head)
        self.tiers.pause(tp, until)
        logger.debug("paused %s[%s] at %s until %.3f", tp[0], tp[1], head, until)

    def _resume(self, tps: list[TP]) -> None:
        for topic, partition in tps:
            try:
                self._consumer.resume([TopicPartition(topic, partition)])
                logger.debug("resumed %s[%s]", topic, partition)
            except KafkaException as exc:
                logger.warning("cannot resume %s[%s]: %s", topic, partition, error_text(exc))

    # -- one job ----------------------------------------------------------------

    async def _handle(self, message: Message, tp: TP, offset: int, epoch: int) -> None:
        try:
            await self.jobs.process(message)
        except Exception as exc:
            # The loop boundary: park the record so the partition keeps moving.
            logger.exception("job at %s[%s]@%s failed unexpectedly; parking it", *tp, offset)
            try:
                await self.jobs.park(
                    message, f"unexpected error: {exc!r}", f"{tp[0]}[{tp[1]}]@{offset}"
                )
            except Exception:
                # Not even parked: leave the offset pending, the job comes back after a restart.
                logger.exception("cannot park the job at %s[%s]@%s", *tp, offset)
                return
        self.tracker.done(tp, offset, epoch)

    # -- offsets and the group -------------------------------------------------

    async def _commit_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            # In a thread: a synchronous commit waits for the group coordinator, for
            # seconds during a rebalance, and the event loop has requests to serve.
            await asyncio.to_thread(self._commit)

    def _commit(self, tps: list[TP] | None = None, *, force: bool = False) -> None:
        positions = self.tracker.committable(tps, force=force)
        if not positions:
            return
        offsets = [TopicPartition(topic, part, off) for (topic, part), off in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            logger.warning("offset commit failed (will retry): %s", error_text(exc))
            return
        self.tracker.mark_committed(positions)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # A partition paused for its tier's head before a rebalance may come back still
        # paused, with no timer of ours left to resume it: start every assignment fresh.
        if self.stopping.is_set():
            consumer.pause(partitions)  # draining: take no new jobs
        else:
            consumer.resume(partitions)
        self.tracker.assign((p.topic, p.partition) for p in partitions)
        self._reader.expect_assigned(partitions)
        logger.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.tiers.forget(tps)
        self._commit(tps, force=True)  # whatever was committed before: others may have moved it
        self.tracker.forget(tps)
        self._reader.forget(partitions)
        logger.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in tps))
