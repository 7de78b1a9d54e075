"""``durian.audit.judge``: what counts as a lost job or a job without an outcome."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from durian.audit import judge
from durian.reading import StoredRecord
from durian.records import (
    Attempt,
    DeliveryJob,
    Event,
    ListenerSpec,
    Record,
    encode,
    job_id,
    listener_key,
)
from durian.signing import generate_secret

NOW = 10_000.0
SECRET = generate_secret()
JOE = ListenerSpec(
    id="lst_joe", hook="person", url="https://e.com/joe", secret=SECRET,
    match={"name": {"$startswith": "J"}},
)  # fmt: skip
ALL = ListenerSpec(id="lst_all", hook="person", url="https://e.com/all", secret=SECRET)


class Topic:
    """Records of one topic, with offsets in order of writing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: list[StoredRecord] = []

    def write(self, at: float, value: Record | None, key: bytes = b"k") -> StoredRecord:
        record = StoredRecord(
            self.name, 0, len(self.records), at, key,
            encode(value) if value is not None else None, {},
        )  # fmt: skip
        self.records.append(record)
        return record


def event(n: int, name: str) -> Event:
    return Event(id=f"evt_{n}", hook="person", occurred_at=datetime.now(UTC), data={"name": name})


def job(e: Event, listener: ListenerSpec, **changes: object) -> DeliveryJob:
    made = DeliveryJob(
        id=job_id(e.id, listener.id),
        event=e,
        listener_id=listener.id,
        listener_version=listener.version,
    )
    return msgspec.structs.replace(made, **changes) if changes else made


def attempt(j: DeliveryJob, outcome: str) -> Attempt:
    return Attempt(
        job_id=j.id, listener_id=j.listener_id, event_id=j.event.id, hook="person",
        attempt=j.attempt, at=datetime.now(UTC), outcome=outcome,  # type: ignore[arg-type]
    )  # fmt: skip


class Pipeline:
    def __init__(self) -> None:
        self.events = Topic("d.events")
        self.listeners = Topic("d.listeners")
        self.deliveries = Topic("d.deliveries")
        self.tier = Topic("d.deliveries.retry.5s")
        self.attempts = Topic("d.attempts")
        self.dead = Topic("d.deliveries.dead")
        self.parked = Topic("d.parked")

    def listener(self, at: float, spec: ListenerSpec) -> None:
        self.listeners.write(at, spec, listener_key(spec.id))

    def judge(self, **kw: float):  # type: ignore[no-untyped-def]
        return judge(
            events=self.events.records, listeners=self.listeners.records,
            deliveries=self.deliveries.records, tiers={5.0: self.tier.records},
            attempts=self.attempts.records, dead=self.dead.records, parked=self.parked.records,
            since=0.0, now=NOW, **kw,
        )  # fmt: skip


def test_every_event_with_its_jobs_delivered_is_ok() -> None:
    p = Pipeline()
    p.listener(100, JOE)
    p.listener(100, ALL)
    for n, name in enumerate(["Joe", "Ann"]):
        e = event(n, name)
        p.events.write(1000 + n, e)
        for listener in (JOE, ALL) if name == "Joe" else (ALL,):
            j = job(e, listener)
            p.deliveries.write(1000.1 + n, j)
            p.attempts.write(1000.2 + n, attempt(j, "delivered"))
    report = p.judge()
    assert report.ok, report
    assert (report.events, report.jobs, report.outcomes["delivered"]) == (2, 3, 3)


def test_a_job_the_stream_never_wrote_is_missing() -> None:
    p = Pipeline()
    p.listener(100, JOE)
    e = event(1, "Joe")
    at = p.events.write(1000, e)
    report = p.judge()
    assert not report.ok
    [missing] = report.missing_jobs
    assert (missing.event_id, missing.listener_id, missing.event_at) == (
        "evt_1", "lst_joe", at.location,
    )  # fmt: skip


def test_a_job_never_attempted_has_no_outcome() -> None:
    p = Pipeline()
    p.listener(100, ALL)
    e = event(1, "Ann")
    p.events.write(1000, e)
    on_topic = p.deliveries.write(1000.1, job(e, ALL))
    report = p.judge()
    [lost] = report.missing_outcomes
    assert (lost.job_id, lost.last_seen) == (job_id("evt_1", "lst_all"), on_topic.location)


def test_retries_dead_letters_and_waiting_jobs_are_outcomes() -> None:
    p = Pipeline()
    p.listener(100, ALL)
    jobs = []
    for n in range(3):
        e = event(n, "Ann")
        p.events.write(1000 + n, e)
        jobs.append(job(e, ALL))
        p.deliveries.write(1000.1 + n, jobs[-1])
        p.attempts.write(1000.2 + n, attempt(jobs[-1], "retrying"))
    # 0: retried and delivered; 1: a dead letter; 2: on its tier, due after now.
    p.tier.write(1001, job(jobs[0].event, ALL, attempt=2))
    p.attempts.write(1007, attempt(job(jobs[0].event, ALL, attempt=2), "delivered"))
    p.dead.write(1008, job(jobs[1].event, ALL, attempt=2))
    p.tier.write(1003, job(jobs[2].event, ALL, attempt=2, not_before=NOW + 3600))
    report = p.judge()
    assert report.ok, report
    assert report.outcomes == {"delivered": 1, "dead": 1, "waiting": 1}


def test_a_retry_that_was_due_long_ago_and_never_tried_has_no_outcome() -> None:
    p = Pipeline()
    p.listener(100, ALL)
    e = event(1, "Ann")
    p.events.write(1000, e)
    p.deliveries.write(1000.1, job(e, ALL))
    p.attempts.write(1000.2, attempt(job(e, ALL), "retrying"))
    tier = p.tier.write(1000.3, job(e, ALL, attempt=2, not_before=1005))
    [lost] = p.judge().missing_outcomes
    assert lost.last_seen == tier.location and lost.due == 1005.3


def test_records_younger_than_the_grace_are_not_judged() -> None:
    p = Pipeline()
    p.listener(100, ALL)
    e = event(1, "Ann")
    p.events.write(NOW - 10, e)
    p.deliveries.write(NOW - 9, job(e, ALL))
    assert p.judge(grace=60).ok
    assert not p.judge(grace=5).ok


def test_listeners_apply_as_they_were_when_the_event_was_written() -> None:
    p = Pipeline()
    p.listener(100, JOE)
    p.events.write(1000, event(1, "Joe"))  # matched then
    p.listener(2000, msgspec.structs.replace(JOE, active=False))
    p.events.write(3000, event(2, "Joe"))  # not any more
    p.listeners.write(2500, None, listener_key(ALL.id))  # a tombstone of one never made
    report = p.judge()
    assert [m.event_id for m in report.missing_jobs] == ["evt_1"]


def test_an_event_written_while_its_listener_changed_is_not_judged() -> None:
    p = Pipeline()
    p.listener(1000, ALL)
    p.events.write(1001, event(1, "Ann"))
    report = p.judge(settle=5)
    assert report.ok and report.unverifiable == 1


def test_unreadable_records_are_reported_by_location() -> None:
    p = Pipeline()
    p.listener(100, ALL)
    p.events.records.append(StoredRecord("d.events", 0, 0, 1000, b"k", b"{oops", {}))
    report = p.judge()
    assert report.unreadable == ["d.events[0]@0"] and report.ok
