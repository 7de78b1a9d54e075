"""What happens to a delivery job next: pure decisions, no I/O and no clock of their own.

The delivery worker (``delivery_workers.consumer``) carries out what these
functions decide, at three moments of a job's life:

* ``when_due`` -- a job was read: send it now, wait a moment, or send it back to
  a retry tier until its own due time (``not_before``).
* ``on_admission`` -- Redis answered whether the job may go (``EndpointHealth.admit``):
  send it, skip it (delivered before), make it a dead letter (its listener was
  disabled), or come back later, after a short wait or through a tier.
* ``after_attempt`` -- an HTTP attempt ended: the attempt record to write, where
  the job goes next (nowhere, a retry tier, the dead letters), whether the
  listener must be disabled and what to say about its circuit breaker.

Each takes the facts and ``now`` and returns a frozen answer, so every rule is
tested without a broker, Redis or an HTTP server (tests/delivery_workers/test_decide.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from delivery_workers.health import Admission, Settlement
from durian import conf
from durian.backoff import next_delay, retry_after_delay
from durian.http.dispatch import AttemptResult
from durian.records import Attempt, DeliveryJob

__all__ = ["Afterwards", "Step", "after_attempt", "on_admission", "when_due"]

#: What a disabled listener's job says on the dead letters.
DISABLED_ERROR = "the listener was disabled; replay the dead letter once it is enabled"


@dataclass(frozen=True)
class Step:
    """What to do with a job before (or instead of) an attempt.

    ``send``: go on. ``skip``: it was delivered before. ``dead``: write it to the dead
    letters with ``error``. ``wait``: sleep ``until - now`` in its task, then go on
    (or ask again). ``defer``: send it back to the tier that fits ``until``; it holds
    no HTTP slot meanwhile. ``throttled`` marks a job that already has its rate-limit
    slot; ``open_until`` is set when Redis reported the endpoint's breaker open.
    """

    action: Literal["send", "skip", "dead", "wait", "defer"]
    until: float = 0.0
    throttled: bool = False
    error: str | None = None
    open_until: float | None = None


_SEND = Step("send")


def _later(until: float, now: float, short_wait: float, *, throttled: bool) -> Step:
    """A wait shorter than the shortest tier is slept out: a tier would be no sooner."""
    action: Literal["wait", "defer"] = "defer" if until - now >= short_wait else "wait"
    return Step(action, until=until, throttled=throttled)


def when_due(job: DeliveryJob, now: float, short_wait: float) -> Step:
    """A job just read: is it due (its ``not_before``)?"""
    if job.not_before is None or job.not_before <= now:
        return _SEND
    return _later(job.not_before, now, short_wait, throttled=job.throttled)


def on_admission(admission: Admission, now: float, short_wait: float) -> Step:
    """What Redis's verdict on a job means for it (see ``delivery_workers.health``)."""
    verdict = admission.verdict
    if verdict == "go":
        return _SEND
    if verdict == "done":
        return Step("skip")
    if verdict == "disabled":
        return Step("dead", error=DISABLED_ERROR)
    step = _later(admission.until, now, short_wait, throttled=verdict == "rate")
    if verdict == "open":
        return Step(step.action, step.until, step.throttled, open_until=admission.until)
    return step


@dataclass(frozen=True)
class Afterwards:
    """What comes of one attempt."""

    attempt: Attempt
    """The record for the attempts topic."""
    next: Literal["done", "retry", "dead"]
    """``done``: nothing more to send; ``retry``: the job goes to the tier that fits
    ``retry_in``; ``dead``: it goes to the dead letters."""
    changes: dict[str, Any] = field(default_factory=dict)
    """The fields of the job's next copy (retry or dead letter)."""
    retry_in: float = 0.0
    disable: str | None = None
    """Set when the listener must be disabled: why."""
    breaker: Literal["recovered", "opened"] | None = None
    """News about the endpoint's circuit breaker, to log."""

    @property
    def outcome(self) -> str:
        return self.attempt.outcome


def after_attempt(
    job: DeliveryJob,
    result: AttemptResult,
    settlement: Settlement,
    settings: conf.Settings,
    now: float,
    rand: Callable[[], float] = random.random,
) -> Afterwards:
    """The outcome of an attempt, where the job goes next, and what it means for its
    listener: a success is final; a failure is retried by ``retry_schedule`` (a
    ``Retry-After`` stretches the delay up to ``max_retry_after``) until the schedule
    runs out or the answer is not retryable, then it is a dead letter; a 410 Gone, or
    failures for ``disable_after`` seconds, disable the listener."""
    changes: dict[str, Any] = {}
    retry_in = 0.0
    following: Literal["done", "retry", "dead"] = "done"
    if not result.ok:
        delay = next_delay(job.attempt, settings.retry_schedule, settings.retry_jitter, rand)
        if delay is None or not result.retryable:
            following = "dead"
            changes = {"last_error": result.error}
        else:
            following = "retry"
            retry_in = retry_after_delay(delay, result.retry_after, settings.max_retry_after)
            changes = {
                "attempt": job.attempt + 1,
                "not_before": now + retry_in,
                "last_error": result.error,
                "throttled": False,
            }
    outcome = {"done": "delivered", "retry": "retrying", "dead": "dead"}[following]
    attempt = Attempt(
        job_id=job.id,
        listener_id=job.listener_id,
        event_id=job.event.id,
        hook=job.event.hook,
        attempt=job.attempt,
        at=datetime.fromtimestamp(now, UTC),
        outcome=outcome,  # type: ignore[arg-type]
        status_code=result.status_code,
        latency_ms=round(result.latency_ms, 3),
        error=result.error,
        response_excerpt=result.response_excerpt,
    )
    disable = None
    if result.gone:
        disable = "the endpoint answered 410 Gone"
    elif (
        settlement.failing_since is not None
        and now - settlement.failing_since >= settings.disable_after
    ):
        started = datetime.fromtimestamp(settlement.failing_since, UTC)
        disable = f"every delivery has failed since {started.isoformat(timespec='seconds')}"
    breaker: Literal["recovered", "opened"] | None = None
    if settlement.state == "recovered":
        breaker = "recovered"
    elif settlement.state == "open":
        breaker = "opened"
    return Afterwards(attempt, following, changes, retry_in, disable, breaker)
