"""One delivery job's way from a record to its outcome on Kafka.

decoded -> due? -> its listener's share of HTTP slots -> admitted by Redis ->
an HTTP slot -> the attempt -> settled in Redis -> the attempt record and the
job's next copy written -> the listener disabled if the outcome says so.
``delivery_workers.decide`` makes every decision on the way; this module
carries them out. The consumer loop (``delivery_workers.consumer``) starts one
``process`` per job and commits its offset when it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from confluent_kafka import Message

from delivery_workers.decide import (
    DISABLED_ERROR,
    Afterwards,
    Step,
    after_attempt,
    on_admission,
    when_due,
)
from delivery_workers.endpoints import WARN_EVERY, Endpoints
from delivery_workers.health import EndpointHealth
from delivery_workers.listeners import ListenerView
from delivery_workers.tiers import RetryTiers
from delivery_workers.writer import Writer
from durian import conf
from durian.exceptions import DecodeError, DurianError
from durian.http.dispatch import Dispatcher
from durian.listener_store import ListenerStore
from durian.match import deepmatch
from durian.records import (
    LISTENER_DISABLED,
    Attempt,
    DeliveryJob,
    Event,
    ListenerSpec,
    decode_message,
    encode,
    event_key,
    listener_key,
    new_id,
)
from durian.topics import TopicNames

__all__ = ["JobRunner", "matches"]

logger = logging.getLogger(__name__)

#: Parked records are cut to this size (a record that could not be written whole).
PARK_MAX_BYTES = 256 * 1024


def matches(listener: ListenerSpec, event: Event) -> bool:
    """Whether the listener as it is now wants the event (asked only of a listener that
    changed since its job was made)."""
    return listener.hook == event.hook and deepmatch(listener.compiled_match(), event.data)


class JobRunner:
    """Carries out each job of one worker; holds what every job shares."""

    def __init__(
        self,
        settings: conf.Settings,
        *,
        concurrency: int,
        dispatcher: Dispatcher,
        health: EndpointHealth,
        writer: Writer,
        tiers: RetryTiers,
        endpoints: Endpoints,
        listeners: ListenerView,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self.dispatcher = dispatcher
        self.health = health
        self.writer = writer
        self.tiers = tiers
        self.endpoints = endpoints
        self.listeners = listeners
        self.clock = clock
        #: HTTP requests in flight at most, over every endpoint.
        self.slots = asyncio.Semaphore(concurrency)
        self.store: ListenerStore | None = None
        self.stats = {
            "delivered": 0, "retrying": 0, "dead": 0, "parked": 0,
            "deferred": 0, "duplicates": 0, "disabled": 0, "dropped": 0,
        }  # fmt: skip

    async def process(self, message: Message) -> None:
        try:
            job = decode_message(message, DeliveryJob)
        except DecodeError as exc:
            logger.error("parking an undecodable delivery job: %s", exc)
            await self.park(message, str(exc), exc.location)
            return
        if await self._carry_out(job, when_due(job, self.clock(), self.tiers.short_wait)):
            return
        if await self._deferred_while_open(job):
            return
        listener = await self._listener(job)
        if listener is None:
            return
        # The listener's share of slots first, then the verdict: a job that waited for
        # its turn asks about the endpoint as it is now (its breaker may have opened
        # meanwhile), and the outcome is recorded before the next job of it asks.
        endpoint = self.endpoints.endpoint(job.listener_id)
        async with endpoint.slots:
            throttled = job.throttled
            if await self._deferred_while_open(job):
                return
            while True:
                admission = await self.health.admit(
                    job.id, job.listener_id, rate=listener.options.rate_limit,
                    throttled=throttled, listener_version=listener.version,
                )  # fmt: skip
                step = on_admission(admission, self.clock(), self.tiers.short_wait)
                if step.open_until is not None:
                    self.endpoints.remember_open(job.listener_id, step.open_until, self.clock())
                if step.action == "skip":
                    self.stats["duplicates"] += 1
                    logger.debug("job %s was delivered before; not sending it again", job.id)
                if await self._carry_out(job, step):
                    return
                throttled = step.throttled
                if step.action == "send":
                    break
            # The HTTP slot is held until the outcome is in Redis, so a worker that dies
            # can have sent at most ``concurrency`` jobs it did not record.
            async with self.slots:
                endpoint.started(self.clock())
                try:
                    result = await self.dispatcher.attempt(job, listener)
                finally:
                    endpoint.finished(self.clock())
                settlement = await self.health.settle(
                    job.id, job.listener_id, ok=result.ok, counts=not result.ok and result.contacted
                )
        if settlement.state == "open":
            self.endpoints.remember_open(job.listener_id, settlement.open_until, self.clock())
        after = after_attempt(job, result, settlement, self.settings, self.clock())
        await self._record(job, listener, after)

    async def _listener(self, job: DeliveryJob) -> ListenerSpec | None:
        """The job's listener as it is now; ``None`` when the job ends here instead: its
        listener was deleted (recorded as dropped), is disabled (a dead letter to replay
        once it is enabled again), or changed its conditions so that they no longer
        match the event (dropped)."""
        try:
            listener = await self.listeners.current(job.listener_id, job.listener_version)
        except DurianError as exc:
            logger.warning("job %s waits: its listener cannot be looked up (%s)", job.id, exc)
            await self._defer(job, self.clock() + self.tiers.short_wait, throttled=job.throttled)
            return None
        if listener is None:
            await self._drop(job, "the listener was deleted")
        elif not listener.active:
            await self.writer.send_job(self.names.dead, job, last_error=DISABLED_ERROR)
            self.stats["dead"] += 1
        elif listener.version > job.listener_version and not matches(listener, job.event):
            await self._drop(job, "the listener's conditions changed and no longer match")
        else:
            return listener
        return None

    async def _drop(self, job: DeliveryJob, reason: str) -> None:
        """End a job without an attempt, and say so on the attempts topic."""
        attempt = Attempt(
            job_id=job.id, listener_id=job.listener_id, event_id=job.event.id,
            hook=job.event.hook, attempt=job.attempt, at=datetime.now(UTC),
            outcome="dropped", error=reason,
        )  # fmt: skip
        key = listener_key(job.listener_id)
        await self.writer.send(self.names.attempts, key, encode(attempt))
        self.stats["dropped"] += 1
        logger.info("job %s is dropped: %s", job.id, reason)

    async def _carry_out(self, job: DeliveryJob, step: Step) -> bool:
        """Do what ``step`` says; True when the job is finished here (not sent now)."""
        if step.action == "wait":
            await asyncio.sleep(max(step.until - self.clock(), 0.0))
            return False
        if step.action == "send":
            return False
        if step.action == "defer":
            await self._defer(job, step.until, throttled=step.throttled)
        elif step.action == "dead":
            await self.writer.send_job(self.names.dead, job, last_error=step.error)
            self.stats["dead"] += 1
        return True

    async def _deferred_while_open(self, job: DeliveryJob) -> bool:
        """Defer the job if this worker saw its endpoint's breaker open: no need to ask
        Redis to hear it again. Once that time has passed, Redis decides (the probe)."""
        open_until = self.endpoints.open_until(job.listener_id)
        if open_until - self.clock() < self.tiers.short_wait:
            return False
        await self._defer(job, open_until, throttled=False)
        return True

    async def _defer(self, job: DeliveryJob, until: float, *, throttled: bool) -> None:
        """Send a job back to the tier that fits its wait; it holds no HTTP slot meanwhile."""
        topic = self.tiers.topic_for(until - self.clock())
        await self.writer.send_job(topic, job, not_before=until, throttled=throttled)
        self.stats["deferred"] += 1
        logger.debug("job %s waits on %s until %.3f", job.id, topic, until)

    async def _record(self, job: DeliveryJob, listener: ListenerSpec, after: Afterwards) -> None:
        """Write the attempt and the job's next copy, then act on what it means."""
        writes = [self.writer.send(self.names.attempts, listener_key(job.listener_id),
                                   encode(after.attempt))]  # fmt: skip
        if after.next == "retry":
            topic = self.tiers.topic_for(after.retry_in)
            writes.append(self.writer.send_job(topic, job, **after.changes))
        elif after.next == "dead":
            writes.append(self.writer.send_job(self.names.dead, job, **after.changes))
        await asyncio.gather(*writes)
        self.stats[after.outcome] += 1
        self._log_outcome(job, listener, after)
        if after.disable is not None:
            await self._disable(listener, after.disable)

    def _log_outcome(self, job: DeliveryJob, listener: ListenerSpec, after: Afterwards) -> None:
        attempt = after.attempt
        if after.outcome == "dead" and self.endpoints.warn_now(listener.id, self.clock()):
            logger.warning(
                "job %s to listener %s (%s) is a dead letter after attempt %d: %s "
                "(more of this listener's in the next %.0f s are logged at INFO; "
                "`durian dlq list --listener %s` shows them)",
                job.id, listener.id, listener.url, job.attempt, attempt.error,
                WARN_EVERY, listener.id,
            )  # fmt: skip
        elif after.outcome != "delivered":
            logger.info(
                "job %s to %s: attempt %d %s (%s)",
                job.id, listener.id, job.attempt, after.outcome, attempt.error,
            )  # fmt: skip
        if after.breaker == "recovered":
            logger.info("listener %s answers again; its circuit breaker is closed", listener.id)
        elif after.breaker == "opened":
            logger.warning(
                "listener %s failed %d or more times in a row; its circuit breaker is open "
                "for %.0f s",
                listener.id, self.settings.breaker_threshold,
                self.endpoints.open_until(listener.id) - self.clock(),
            )  # fmt: skip

    async def _disable(self, listener: ListenerSpec, reason: str) -> None:
        """Turn a listener off on the listeners topic and say so with an event."""
        try:
            current = await self.listeners.current(listener.id, listener.version)
        except DurianError as exc:
            logger.warning("not disabling listener %s: %s", listener.id, exc)
            return
        if current is None:
            return  # deleted meanwhile
        version = current.version
        if current.url != listener.url or version > listener.version:
            logger.info("not disabling listener %s: it changed since this job", listener.id)
            return
        if not current.active or not await self.health.mark_disabled(current.id, version):
            return  # already disabled, here or by another worker
        now = datetime.now(UTC)
        disabled = msgspec.structs.replace(current, active=False, updated_at=now)
        if self.store is None:
            self.store = ListenerStore(self.settings)
        await asyncio.to_thread(self.store.put, disabled)
        event = Event(
            id=new_id("evt"),
            hook=LISTENER_DISABLED,
            occurred_at=now,
            data={"listener_id": current.id, "hook": current.hook, "url": current.url,
                  "reason": reason},
            object_id=current.id,
        )  # fmt: skip
        key = event_key(LISTENER_DISABLED, current.id)
        await self.writer.send(self.names.events, key, encode(event))
        self.stats["disabled"] += 1
        logger.warning("listener %s (%s) is disabled: %s", current.id, current.url, reason)

    async def park(self, message: Message, error: str, source: str) -> None:
        """Set a record aside on the parked topic, with why and where it was read. A record
        too large to write anywhere (its job could not be retried either) is parked cut
        to ``PARK_MAX_BYTES``, its full size in a header: parked all the same, so its
        partition's offsets move on."""
        value = message.value() or b""
        headers: dict[str, Any] = {"durian-error": error, "durian-source": source}
        if len(value) > PARK_MAX_BYTES:
            headers["durian-truncated-from"] = str(len(value))
            value = value[:PARK_MAX_BYTES]
        await self.writer.send(self.names.parked, message.key() or b"", value, headers)
        self.stats["parked"] += 1

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
        await self.health.aclose()
        self.listeners.close()
        if self.store is not None:
            self.store.close()
