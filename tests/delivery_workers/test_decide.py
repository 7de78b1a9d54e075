"""The delivery worker's decisions, tiers and endpoint view, without a broker, Redis or HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import pytest

from delivery_workers.decide import after_attempt, on_admission, when_due
from delivery_workers.endpoints import STALLED_AFTER, WARN_EVERY, Endpoints
from delivery_workers.health import Admission, Settlement
from delivery_workers.tiers import RetryTiers
from durian import conf
from durian.http.dispatch import AttemptResult
from durian.records import DeliveryJob, Event, ListenerSpec, job_id
from durian.signing import generate_secret

NOW = 1_800_000_000.0
SHORT = 5.0  # the shortest tier of the schedule below
SECRET = generate_secret()


def settings(**overrides: object) -> conf.Settings:
    base: dict[str, object] = {
        "RETRY_SCHEDULE": "5,60,600",
        "RETRY_JITTER": 0.2,
        "MAX_RETRY_AFTER": 3600,
        "DISABLE_AFTER": 86400,
    }
    return conf.load(environ={}, overrides={**base, **overrides})


def job(**changes: object) -> DeliveryJob:
    listener = ListenerSpec(id="lst_1", hook="person", url="https://example.com/", secret=SECRET)
    event = Event(id="evt_1", hook="person", occurred_at=datetime.now(UTC), data={"n": 1})
    the_job = DeliveryJob(
        id=job_id(event.id, listener.id),
        event=event,
        listener_id=listener.id,
        listener_version=listener.version,
    )
    return msgspec.structs.replace(the_job, **changes) if changes else the_job


def failed(status: int | None = 500, **fields: object) -> AttemptResult:
    values: dict[str, object] = {"error": f"answered HTTP {status}", "retryable": True, **fields}
    return AttemptResult(False, status, 12.3456, **values)  # type: ignore[arg-type]


OK = AttemptResult(True, 200, 3.2, response_excerpt="thanks")
SETTLED = Settlement("ok")


def no_jitter() -> float:
    return 0.5  # the middle of the jitter range: the scheduled delay exactly


# -- when a job read is due -------------------------------------------------------


@pytest.mark.parametrize(
    ("not_before", "action", "until"),
    [
        (None, "send", 0.0),
        (NOW - 1, "send", 0.0),
        (NOW + 2, "wait", NOW + 2),  # shorter than the shortest tier: slept out
        (NOW + SHORT, "defer", NOW + SHORT),
        (NOW + 3600, "defer", NOW + 3600),
    ],
)
def test_a_job_is_sent_slept_out_or_deferred_by_its_due_time(
    not_before: float | None, action: str, until: float
) -> None:
    step = when_due(job(not_before=not_before, throttled=True), NOW, SHORT)
    assert (step.action, step.until) == (action, until)
    if action != "send":
        assert step.throttled  # a job that holds its rate-limit slot keeps it


# -- what Redis's verdict means ---------------------------------------------------


def test_go_sends_done_skips_and_disabled_is_a_dead_letter() -> None:
    assert on_admission(Admission("go"), NOW, SHORT).action == "send"
    assert on_admission(Admission("done"), NOW, SHORT).action == "skip"
    dead = on_admission(Admission("disabled", NOW - 10), NOW, SHORT)
    assert dead.action == "dead" and dead.error and "replay" in dead.error


@pytest.mark.parametrize("verdict", ["busy", "open", "rate"])
def test_come_back_later_is_a_short_wait_or_a_tier(verdict: str) -> None:
    short = on_admission(Admission(verdict, NOW + 1), NOW, SHORT)  # type: ignore[arg-type]
    long = on_admission(Admission(verdict, NOW + 600), NOW, SHORT)  # type: ignore[arg-type]
    assert (short.action, short.until) == ("wait", NOW + 1)
    assert (long.action, long.until) == ("defer", NOW + 600)
    # Only the rate limiter gives the job a slot of its own; only "open" is breaker news.
    assert long.throttled is (verdict == "rate")
    assert long.open_until == (NOW + 600 if verdict == "open" else None)


# -- after an attempt -------------------------------------------------------------


def test_a_success_is_recorded_and_goes_nowhere() -> None:
    after = after_attempt(job(), OK, SETTLED, settings(), NOW)
    assert after.outcome == "delivered" and after.next == "done" and after.changes == {}
    assert after.attempt.status_code == 200 and after.attempt.response_excerpt == "thanks"
    assert after.attempt.at == datetime.fromtimestamp(NOW, UTC)
    assert after.disable is None and after.breaker is None


def test_a_retryable_failure_rides_the_schedule_with_its_own_due_time() -> None:
    after = after_attempt(job(attempt=2), failed(503), SETTLED, settings(), NOW, no_jitter)
    assert after.outcome == "retrying" and after.next == "retry"
    assert after.retry_in == 60
    assert after.changes == {
        "attempt": 3, "not_before": NOW + 60, "last_error": "answered HTTP 503", "throttled": False
    }  # fmt: skip
    assert after.attempt.attempt == 2 and after.attempt.latency_ms == 12.346


def test_jitter_spreads_the_delay_both_ways() -> None:
    early = after_attempt(job(), failed(), SETTLED, settings(), NOW, lambda: 0.0)
    late = after_attempt(job(), failed(), SETTLED, settings(), NOW, lambda: 0.999999)
    assert early.retry_in == pytest.approx(4.0) and late.retry_in == pytest.approx(6.0, abs=1e-4)


def test_retry_after_stretches_the_delay_up_to_the_ceiling() -> None:
    asked = after_attempt(
        job(), failed(429, retry_after=120.0), SETTLED, settings(), NOW, no_jitter
    )
    greedy = after_attempt(job(), failed(429, retry_after=1e9), SETTLED, settings(), NOW, no_jitter)
    hurried = after_attempt(
        job(), failed(429, retry_after=1.0), SETTLED, settings(), NOW, no_jitter
    )
    assert (asked.retry_in, greedy.retry_in, hurried.retry_in) == (120, 3600, 5)


def test_the_end_of_the_schedule_or_a_final_answer_is_a_dead_letter() -> None:
    exhausted = after_attempt(job(attempt=4), failed(), SETTLED, settings(), NOW)
    final = after_attempt(job(), failed(400, retryable=False), SETTLED, settings(), NOW)
    for after in (exhausted, final):
        assert after.outcome == "dead" and after.next == "dead"
        assert after.changes == {"last_error": after.attempt.error}


def test_gone_disables_the_listener() -> None:
    gone = failed(410, retryable=False, gone=True)
    after = after_attempt(job(), gone, Settlement("failing", failing_since=NOW), settings(), NOW)
    assert after.next == "dead" and after.disable == "the endpoint answered 410 Gone"


def test_failing_for_disable_after_disables_the_listener() -> None:
    s = settings(DISABLE_AFTER=3600)
    young = Settlement("failing", failing_since=NOW - 3599)
    old = Settlement("open", open_until=NOW + 60, failing_since=NOW - 3600)
    assert after_attempt(job(), failed(), young, s, NOW).disable is None
    after = after_attempt(job(), failed(), old, s, NOW)
    assert after.disable == "every delivery has failed since 2027-01-15T07:00:00+00:00"
    assert after.breaker == "opened"


def test_breaker_news_is_reported() -> None:
    assert after_attempt(job(), OK, Settlement("recovered"), settings(), NOW).breaker == "recovered"
    assert after_attempt(job(), failed(), Settlement("failing", failing_since=NOW), settings(),
                         NOW).breaker is None  # fmt: skip


# -- retry tiers --------------------------------------------------------------------


def test_a_wait_rides_the_longest_tier_not_longer_than_it() -> None:
    tiers = RetryTiers(settings(TOPIC_PREFIX="t"))
    assert tiers.short_wait == 5
    assert tiers.topic_for(0) == tiers.topic_for(4.9) == "t.deliveries.retry.5s"
    assert tiers.topic_for(59.9) == "t.deliveries.retry.5s"
    assert tiers.topic_for(60) == tiers.topic_for(599) == "t.deliveries.retry.1m"
    assert tiers.topic_for(1e6) == "t.deliveries.retry.10m"


def test_a_tier_head_is_due_its_delay_after_it_was_written() -> None:
    tiers = RetryTiers(settings(TOPIC_PREFIX="t"))
    assert tiers.wait_for_head("t.deliveries.retry.1m", NOW - 50, NOW) == pytest.approx(10)
    assert tiers.wait_for_head("t.deliveries.retry.1m", NOW - 61, NOW) == 0
    assert tiers.wait_for_head("t.deliveries", NOW, NOW) == 0  # not a tier: always due


def test_paused_partitions_are_due_once_and_forgotten_on_revocation() -> None:
    tiers = RetryTiers(settings())
    a, b, c = ("t", 0), ("t", 1), ("t", 2)
    tiers.pause(a, NOW + 1)
    tiers.pause(b, NOW + 5)
    tiers.pause(c, NOW + 1)
    tiers.forget([c])
    assert tiers.paused(a) and tiers.paused(b) and not tiers.paused(c)
    assert tiers.due(NOW) == []
    assert tiers.due(NOW + 1) == [a]
    assert tiers.due(NOW + 1) == [] and not tiers.paused(a)
    assert tiers.due(NOW + 10) == [b]


# -- this worker's view of endpoints --------------------------------------------------


def test_a_job_is_passed_by_while_its_breaker_is_seen_open() -> None:
    endpoints = Endpoints(concurrency=2, pending=4)
    assert endpoints.pass_by("lst_1", NOW, SHORT, 30) is None
    endpoints.remember_open("lst_1", NOW + 100, NOW)
    assert endpoints.pass_by("lst_1", NOW, SHORT, 30) == 100
    assert endpoints.pass_by("lst_1", NOW + 96, SHORT, 30) is None  # soon: Redis decides


def test_a_full_share_is_passed_by_only_while_its_endpoint_is_stalled() -> None:
    async def go() -> None:
        endpoints = Endpoints(concurrency=2, pending=2)
        endpoints.hold("lst_1")
        endpoints.hold("lst_1")
        endpoint = endpoints.endpoint("lst_1")
        assert endpoints.pass_by("lst_1", NOW, SHORT, 30) is None  # nothing in flight
        endpoint.started(NOW)
        assert endpoints.pass_by("lst_1", NOW + STALLED_AFTER / 2, SHORT, 30) is None
        assert endpoints.pass_by("lst_1", NOW + 1, SHORT, 30) == 30
        endpoint.finished(NOW + 1)  # answers come again
        assert endpoints.pass_by("lst_1", NOW + 1, SHORT, 30) is None
        endpoints.release("lst_1")
        endpoints.release("lst_1")
        assert endpoints.endpoint("lst_1") is not endpoint  # its last job was done: forgotten

    asyncio.run(go())


def test_dead_letter_warnings_come_once_a_minute_per_listener() -> None:
    endpoints = Endpoints(concurrency=1, pending=1)
    assert endpoints.warn_now("lst_1", NOW)
    assert not endpoints.warn_now("lst_1", NOW + WARN_EVERY - 1)
    assert endpoints.warn_now("lst_2", NOW + 1)
    assert endpoints.warn_now("lst_1", NOW + WARN_EVERY)
