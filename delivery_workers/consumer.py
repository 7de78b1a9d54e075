"""The delivery worker: consume jobs, POST them concurrently, commit only what is finished.

One consumer group reads the deliveries topic and every retry tier
(``<prefix>.deliveries.retry.<delay>``). A job read from a tier is due the
tier's fixed delay after it was written there; when a partition's head is not
due yet, the partition is paused and rewound to the head, and resumed when
the head is due: no sleeping in the poll loop, and a waiting tier never holds
up another partition. A job whose own due time (``not_before``) is further
away than that moves on to the tier that fits the rest of its wait.

Each job asks ``EndpointHealth`` (Redis) first: a job already delivered is
skipped, one whose endpoint's breaker is open or whose rate limit has no
room goes back to a tier until it may go (deferred jobs hold no HTTP slot),
and the rest are sent, at most ``concurrency`` at a time per process.

Jobs of one partition run concurrently and finish out of order, so offsets
are committed only below the lowest job still in flight (``OffsetTracker``).
A job counts as finished when its outcome is safely on Kafka: the attempt
record, and for a failure the job on its retry tier (or the dead letters).
A job that fails unexpectedly is parked, so its partition keeps moving.
SIGTERM stops consuming, lets in-flight jobs finish, and commits.

confluent-kafka runs in worker threads (``consume`` blocks); its delivery
callbacks run in the event loop thread through ``poll(0)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from delivery_workers.dispatch import AttemptResult, Dispatcher
from delivery_workers.health import EndpointHealth, Settlement
from delivery_workers.offsets import TP, OffsetTracker
from durian import conf
from durian.backoff import next_delay, retry_after_delay, tier_for
from durian.exceptions import DecodeError, DurianError, PublishError
from durian.kafka import confluent_config
from durian.records import (
    LISTENER_DISABLED,
    Attempt,
    DeliveryJob,
    Event,
    ListenerSpec,
    encode,
    event_key,
    listener_key,
    new_id,
)
from durian.store import GuardedConsumer, ListenerStore, decode_message
from durian.topics import TopicNames

__all__ = ["DeliveryWorker"]

logger = logging.getLogger(__name__)
_kafka_log = logging.getLogger("durian.kafka.client")


def _version(listener: ListenerSpec) -> float:
    return listener.updated_at.timestamp() if listener.updated_at else 0.0


#: An endpoint with requests in flight and no answer for this long counts as stalled.
_STALLED_AFTER = 0.25
#: Seconds between two warnings about dead letters of one listener.
_WARN_EVERY = 60.0


class _Endpoint:
    """This worker's share of HTTP slots for one listener, and whether its answers keep
    coming. It lives while the worker holds a job of that listener (``_held``)."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.in_flight = 0
        self.last_progress = 0.0
        """When a request last started on an idle endpoint, or last finished."""

    def stalled(self, now: float) -> bool:
        """Requests are in flight and none has finished for a while: its backlog will not
        move soon. A slow endpoint that answers steadily, even at seconds per request,
        keeps finishing one every few moments at its concurrency and is not stalled."""
        return self.in_flight > 0 and now - self.last_progress > _STALLED_AFTER


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
        self.concurrency = concurrency
        #: Jobs in hand at most (waiting for an HTTP slot, a short wait, or Kafka).
        self.max_pending = max(concurrency * 4, 2048)
        #: Jobs of one listener in hand at most; more wait on a tier, so that a slow
        #: endpoint with a backlog cannot fill ``max_pending`` and stall the others.
        self.endpoint_pending = settings.endpoint_concurrency * 16
        self.dispatcher = dispatcher or Dispatcher(settings)
        self.health = health or EndpointHealth(settings, clock=clock)
        self.clock = clock
        self.tracker = OffsetTracker()
        self.stopping = asyncio.Event()
        self.stats = {
            "delivered": 0, "retrying": 0, "dead": 0, "parked": 0,
            "deferred": 0, "duplicates": 0, "disabled": 0,
        }  # fmt: skip
        tiers = sorted(set(settings.retry_schedule))
        self.tier_delays = tiers
        self.tiers: dict[str, float] = {self.names.deliveries_retry(t): t for t in tiers}
        #: A wait shorter than this is slept out in the job's task instead of
        #: a trip through a tier (it would come back no sooner than the shortest tier).
        self.short_wait = min(tiers) if tiers else 1.0
        self._slots: asyncio.Semaphore | None = None
        self._paused: dict[TP, asyncio.TimerHandle] = {}
        self._resume: set[TP] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoints: dict[str, _Endpoint] = {}
        #: Jobs in hand per message key (listener id), counted from the moment they are read.
        self._held: Counter[str] = Counter()
        #: Breakers this worker saw open, and until when (a cache of Redis's answer).
        self._open: dict[str, float] = {}
        #: When this worker last warned about each listener's dead letters.
        self._warned: dict[str, float] = {}
        self._store: ListenerStore | None = None
        self._producer = Producer(confluent_config(settings, "writer", logger=_kafka_log))
        self._consumer = Consumer(
            confluent_config(
                settings, "consumer", logger=_kafka_log, **{"group.id": self.names.group("deliver")}
            )
        )
        #: Reads every record in order even where the broker skips one (``durian.gap``).
        self._reader = GuardedConsumer(self._consumer, settings, "deliver")

    # -- running --------------------------------------------------------------

    async def run(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)
        self._consumer.subscribe(
            [self.names.deliveries, *self.tiers],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )
        poller = asyncio.create_task(self._poll_producer())
        committer = asyncio.create_task(self._commit_every(1.0))
        try:
            while not self.stopping.is_set():
                self._apply_resumes()
                room = self.max_pending - len(self._tasks)
                if room <= 0:  # enough jobs in hand: wait for one before taking more
                    await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch = await asyncio.to_thread(self._reader.consume, min(room, 500), 0.2)
                for message in batch:
                    self._start(message)
        finally:
            await self._drain()
            committer.cancel()
            self._commit()
            poller.cancel()
            for handle in self._paused.values():
                handle.cancel()
            self._producer.flush(10)
            await asyncio.to_thread(self._consumer.close)
            await self.dispatcher.aclose()
            await self.health.aclose()
            if self._store is not None:
                self._store.close()
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
        deadline = loop.time() + self.settings.delivery_timeout + self.short_wait + 5
        try:
            self._consumer.pause(self._consumer.assignment())
        except KafkaException as exc:
            logger.warning("cannot pause before stopping: %s", exc.args[0].str())
        while self._tasks and loop.time() < deadline:
            # Serves rebalance callbacks; a record fetched before the pause is not taken
            # (not tracked, so never committed: its partition's owner reads it again).
            await asyncio.to_thread(self._consumer.consume, 100, 0.1)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=0.05)
        for task in self._tasks:
            task.cancel()

    def _start(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.error("consumer error: %s", error.str())
            return
        tp: TP = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        if tp in self._paused:
            return  # fetched before the pause; read again from the head on resume
        tier = self.tiers.get(tp[0])
        if tier is not None:
            due = message.timestamp()[1] / 1000 + tier
            wait = due - self.clock()
            if wait > 0:
                self._pause(tp, offset, wait)
                return
        epoch = self.tracker.add(tp, offset)
        if epoch is None:
            return  # its partition was revoked while the batch was read: the new owner reads it
        if self._pass_by(message, tp, offset, epoch):
            return
        self._spawn(message, tp, offset, epoch)

    def _spawn(self, message: Message, tp: TP, offset: int, epoch: int) -> None:
        key = (message.key() or b"").decode(errors="replace")
        self._held[key] += 1

        def finished(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]
                self._endpoints.pop(key, None)  # its last job is done

        task = asyncio.create_task(self._handle(message, tp, offset, epoch))
        self._tasks.add(task)
        task.add_done_callback(finished)

    def _pass_by(self, message: Message, tp: TP, offset: int, epoch: int) -> bool:
        """Move a job to the tier that fits its wait, as it is (no decoding, no task,
        no Redis), when its endpoint cannot take it now: this worker saw its breaker
        open, or holds its share of the endpoint's jobs already. A broken or slow
        endpoint's backlog then costs one produce per job and round, and healthy
        endpoints keep the worker's time. Jobs whose key is not a listener id take
        the long way (and are parked there if they are not jobs at all)."""
        key = message.key()
        if not key:
            return False
        listener_id = key.decode(errors="replace")
        now = self.clock()
        wait = self._open.get(listener_id, 0.0) - now if self._open else 0.0
        if wait < self.short_wait:
            if self._held.get(listener_id, 0) < self.endpoint_pending:
                return False
            endpoint = self._endpoints.get(listener_id)
            if endpoint is None or not endpoint.stalled(now):
                return False  # a backlog, but it moves: keep reading it
            # By then the requests in flight have finished or timed out.
            wait = max(self.short_wait, self.settings.delivery_timeout)
        topic = self.names.deliveries_retry(tier_for(wait, self.tier_delays))

        def moved(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.tracker.done(tp, offset, epoch)
            else:  # deliver it the long way instead
                logger.warning("cannot move a job to %s (%s); handling it now", topic, err.str())
                self._spawn(message, tp, offset, epoch)

        while True:
            try:
                self._producer.produce(
                    topic, key=key, value=message.value(), headers=message.headers(),
                    on_delivery=moved,
                )  # fmt: skip
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException:
                return False
        self.stats["deferred"] += 1
        return True

    # -- retry tiers: pause a partition until its head is due ------------------

    def _pause(self, tp: TP, head: int, wait: float) -> None:
        partition = TopicPartition(tp[0], tp[1], head)
        try:
            self._consumer.pause([partition])
            self._consumer.seek(partition)
        except KafkaException as exc:
            # Not paused: the head is read again at once, and tested again.
            logger.warning("cannot pause %s[%s]: %s", tp[0], tp[1], exc.args[0].str())
            return
        self._reader.expect(tp, head)
        loop = asyncio.get_running_loop()
        self._paused[tp] = loop.call_later(wait, self._resume.add, tp)
        logger.debug("paused %s[%s] at %s for %.2f s", tp[0], tp[1], head, wait)

    def _apply_resumes(self) -> None:
        while self._resume:
            tp = self._resume.pop()
            if self._paused.pop(tp, None) is None:
                continue  # revoked meanwhile
            try:
                self._consumer.resume([TopicPartition(tp[0], tp[1])])
                logger.debug("resumed %s[%s]", tp[0], tp[1])
            except KafkaException as exc:
                logger.warning("cannot resume %s[%s]: %s", tp[0], tp[1], exc.args[0].str())

    # -- one job ----------------------------------------------------------------

    async def _handle(self, message: Message, tp: TP, offset: int, epoch: int) -> None:
        try:
            await self._process(message)
        except Exception as exc:
            # The loop boundary: park the record so the partition keeps moving.
            logger.exception("job at %s[%s]@%s failed unexpectedly; parking it", *tp, offset)
            try:
                await self._park(
                    message, f"unexpected error: {exc!r}", f"{tp[0]}[{tp[1]}]@{offset}"
                )
            except Exception:
                # Not even parked: leave the offset pending, the job comes back after a restart.
                logger.exception("cannot park the job at %s[%s]@%s", *tp, offset)
                return
        self.tracker.done(tp, offset, epoch)

    async def _process(self, message: Message) -> None:
        try:
            job = decode_message(message, DeliveryJob)
        except DecodeError as exc:
            logger.error("parking an undecodable delivery job: %s", exc)
            await self._park(message, str(exc), exc.location)
            return
        if job.not_before is not None:
            wait = job.not_before - self.clock()
            if wait >= self.short_wait:
                await self._defer(job, job.not_before, throttled=job.throttled)
                return
            if wait > 0:
                await asyncio.sleep(wait)
        await self._deliver(job)

    async def _deliver(self, job: DeliveryJob) -> None:
        listener = job.listener
        if await self._deferred_while_open(job):
            return
        endpoint = self._endpoints.get(listener.id)
        if endpoint is None:
            endpoint = self._endpoints[listener.id] = _Endpoint(self.settings.endpoint_concurrency)
        await self._admit_and_send(job, endpoint)

    async def _admit_and_send(self, job: DeliveryJob, endpoint: _Endpoint) -> None:
        # The listener's share of slots first, then the verdict: a job that waited for
        # its turn asks about the endpoint as it is now (its breaker may have opened
        # meanwhile), and the outcome is recorded before the next job of it asks.
        async with endpoint.slots:
            outcome = await self._admitted_attempt(job, endpoint)
        if outcome is None:
            return
        result, settlement = outcome
        await self._record(job, result)
        await self._watch_health(job, result, settlement)

    async def _admitted_attempt(
        self, job: DeliveryJob, endpoint: _Endpoint
    ) -> tuple[AttemptResult, Settlement] | None:
        """One HTTP attempt, recorded in Redis, if the endpoint's health admits the job
        now; else ``None`` (skipped as delivered, a dead letter of a disabled listener,
        or deferred). The HTTP slot is held until the outcome is in Redis, so a worker
        that dies can have sent at most ``concurrency`` jobs it did not record."""
        listener = job.listener
        throttled = job.throttled
        if await self._deferred_while_open(job):
            return None
        while True:
            admission = await self.health.admit(
                job.id,
                listener.id,
                rate=listener.options.rate_limit,
                throttled=throttled,
                listener_version=_version(listener),
            )
            verdict = admission.verdict
            if verdict == "go":
                break
            if verdict == "done":
                self.stats["duplicates"] += 1
                logger.debug("job %s was delivered before; not sending it again", job.id)
                return None
            if verdict == "disabled":
                error = "the listener was disabled; replay the dead letter once it is enabled"
                await self._produce_job(self.names.dead, job, last_error=error)
                self.stats["dead"] += 1
                return None
            if verdict == "open":
                self._remember_open(listener.id, admission.until)
            throttled = verdict == "rate"
            wait = admission.until - self.clock()
            logger.debug("job %s: %s, comes back in %.2f s", job.id, verdict, wait)
            if wait >= self.short_wait:
                await self._defer(job, admission.until, throttled=throttled)
                return None
            await asyncio.sleep(max(wait, 0.0))
        assert self._slots is not None
        async with self._slots:
            if not endpoint.in_flight:
                endpoint.last_progress = self.clock()
            endpoint.in_flight += 1
            try:
                result = await self.dispatcher.attempt(job)
            finally:
                endpoint.in_flight -= 1
                endpoint.last_progress = self.clock()
            settlement = await self.health.settle(
                job.id, listener.id, ok=result.ok, counts=not result.ok and result.contacted
            )
        if settlement.state == "open":
            self._remember_open(listener.id, settlement.open_until)
        return result, settlement

    async def _deferred_while_open(self, job: DeliveryJob) -> bool:
        """Defer the job if this worker saw its endpoint's breaker open: no need to ask
        Redis to hear it again. Once that time has passed, Redis decides (the probe)."""
        open_until = self._open.get(job.listener.id, 0.0)
        if open_until - self.clock() < self.short_wait:
            return False
        await self._defer(job, open_until, throttled=False)
        return True

    def _remember_open(self, listener_id: str, until: float) -> None:
        now = self.clock()
        if len(self._open) > 10_000:  # forget breakers that have closed or may probe
            self._open = {lid: t for lid, t in self._open.items() if t > now}
        self._open[listener_id] = until

    async def _defer(self, job: DeliveryJob, until: float, *, throttled: bool) -> None:
        """Send a job back to the tier that fits its wait; it holds no HTTP slot meanwhile."""
        tier = tier_for(max(until - self.clock(), 0.0), self.tier_delays)
        await self._produce_job(
            self.names.deliveries_retry(tier), job, not_before=until, throttled=throttled
        )
        self.stats["deferred"] += 1
        logger.debug("job %s waits on the %gs tier until %.3f", job.id, tier, until)

    async def _record(self, job: DeliveryJob, result: AttemptResult) -> None:
        s = self.settings
        follow_up: tuple[str, dict[str, Any]] | None = None
        if result.ok:
            outcome = "delivered"
        else:
            delay = next_delay(job.attempt, s.retry_schedule, s.retry_jitter)
            if delay is None or not result.retryable:
                outcome = "dead"
                follow_up = (self.names.dead, {"last_error": result.error})
            else:
                outcome = "retrying"
                delay = retry_after_delay(delay, result.retry_after, s.max_retry_after)
                tier = tier_for(delay, self.tier_delays)
                follow_up = (
                    self.names.deliveries_retry(tier),
                    {
                        "attempt": job.attempt + 1,
                        "not_before": self.clock() + delay,
                        "last_error": result.error,
                        "throttled": False,
                    },
                )
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
        key = listener_key(job.listener.id)
        waits = [self._produce(self.names.attempts, key, encode(attempt))]
        if follow_up is not None:
            waits.append(self._produce_job(follow_up[0], job, **follow_up[1]))
        await asyncio.gather(*waits)
        self.stats[outcome] += 1
        if outcome == "dead" and self._warn_now(job.listener.id):
            logger.warning(
                "job %s to listener %s (%s) is a dead letter after attempt %d: %s "
                "(more of this listener's in the next %.0f s are logged at INFO; "
                "`durian dlq list --listener %s` shows them)",
                job.id, job.listener.id, job.listener.url, job.attempt, result.error,
                _WARN_EVERY, job.listener.id,
            )  # fmt: skip
        elif not result.ok:
            logger.info(
                "job %s to %s: attempt %d %s (%s)",
                job.id, job.listener.id, job.attempt, outcome, result.error,
            )  # fmt: skip

    def _warn_now(self, listener_id: str) -> bool:
        """Whether a warning about ``listener_id`` is due (one per ``_WARN_EVERY``)."""
        now = self.clock()
        if now - self._warned.get(listener_id, float("-inf")) < _WARN_EVERY:
            return False
        if len(self._warned) > 10_000:
            self._warned = {lid: t for lid, t in self._warned.items() if now - t < _WARN_EVERY}
        self._warned[listener_id] = now
        return True

    # -- endpoint health: breaker news and disabling ----------------------------

    async def _watch_health(
        self, job: DeliveryJob, result: AttemptResult, settlement: Settlement
    ) -> None:
        listener = job.listener
        if settlement.state == "recovered":
            logger.info("listener %s answers again; its circuit breaker is closed", listener.id)
        elif settlement.state == "open":
            wait = settlement.open_until - self.clock()
            logger.warning(
                "listener %s failed %d or more times in a row; its circuit breaker is open "
                "for %.0f s",
                listener.id, self.settings.breaker_threshold, wait,
            )  # fmt: skip
        if result.gone:
            await self._disable(listener, "the endpoint answered 410 Gone")
            return
        since = settlement.failing_since
        if since is not None and self.clock() - since >= self.settings.disable_after:
            started = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
            await self._disable(listener, f"every delivery has failed since {started}")

    async def _disable(self, listener: ListenerSpec, reason: str) -> None:
        """Turn a listener off on the listeners topic and say so with an event."""
        try:
            current = await asyncio.to_thread(self._listener_store().get, listener.id)
        except DurianError as exc:
            logger.warning("not disabling listener %s: %s", listener.id, exc)
            return
        if current.url != listener.url or _version(current) > _version(listener):
            logger.info("not disabling listener %s: it changed since this job", listener.id)
            return
        if not current.active or not await self.health.mark_disabled(current.id, _version(current)):
            return  # already disabled, here or by another worker
        now = datetime.now(UTC)
        disabled = msgspec.structs.replace(current, active=False, updated_at=now)
        await asyncio.to_thread(self._listener_store().put, disabled)
        event = Event(
            id=new_id("evt"),
            hook=LISTENER_DISABLED,
            occurred_at=now,
            data={"listener_id": current.id, "hook": current.hook, "url": current.url,
                  "reason": reason},
            object_id=current.id,
        )  # fmt: skip
        await self._produce(
            self.names.events, event_key(LISTENER_DISABLED, current.id), encode(event)
        )
        self.stats["disabled"] += 1
        logger.warning("listener %s (%s) is disabled: %s", current.id, current.url, reason)

    def _listener_store(self) -> ListenerStore:
        if self._store is None:
            self._store = ListenerStore(self.settings)
        return self._store

    async def _park(self, message: Message, error: str, source: str) -> None:
        headers: dict[str, str | bytes | None] = {"durian-error": error, "durian-source": source}
        await self._produce(
            self.names.parked, message.key() or b"", message.value() or b"", headers
        )
        self.stats["parked"] += 1

    def _produce_job(self, topic: str, job: DeliveryJob, **changes: Any) -> asyncio.Future[None]:
        record = msgspec.structs.replace(job, **changes) if changes else job
        return self._produce(topic, listener_key(job.listener.id), encode(record))

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
            logger.warning("offset commit failed (will retry): %s", exc.args[0].str())
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
        for tp in tps:
            handle = self._paused.pop(tp, None)
            if handle is not None:
                handle.cancel()
        self._commit(tps, force=True)  # whatever was committed before: others may have moved it
        self.tracker.forget(tps)
        self._reader.forget(partitions)
        logger.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in tps))
