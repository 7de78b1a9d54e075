"""``durian audit``: prove from the topics that nothing was lost.

Two questions, answered by reading what the pipeline wrote since a moment:

* **Every event has its jobs.** For each event, the listeners that matched it
  when it was written (rebuilt from the listeners topic's history) must each
  have a job on the deliveries topic with the stable id of (event, listener).
* **Every job has an outcome.** Each job must have been delivered (an attempt
  record says so), be a dead letter, be parked, or still be waiting on a
  retry tier with its due time ahead.

Records younger than ``grace`` seconds are still on their way and are not
judged. An event written within ``settle`` seconds of a change to one of its
listeners is not judged for that listener (which version applied is a race
the stream processor decides), and neither is an event whose listener
history was compacted away; both are counted as unverifiable. The judging is
the pure function :func:`judge`; :func:`audit` reads the topics for it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from durian.conf import Settings
from durian.exceptions import DecodeError
from durian.match import deepmatch, spec_from_json
from durian.reading import StoredRecord, read_since
from durian.records import Attempt, DeliveryJob, Event, ListenerSpec, decode, job_id
from durian.topics import TopicNames

__all__ = ["AuditReport", "MissingJob", "MissingOutcome", "audit", "judge"]

Outcome = Literal["delivered", "dead", "dropped", "parked", "waiting"]


@dataclass(frozen=True)
class MissingJob:
    event_id: str
    listener_id: str
    job_id: str
    event_at: str
    """Where the event is: ``topic[partition]@offset``."""


@dataclass(frozen=True)
class MissingOutcome:
    job_id: str
    listener_id: str
    last_seen: str
    """The job's last record: ``topic[partition]@offset``."""
    due: float
    """When that record was due to be attempted (Unix time)."""


@dataclass
class AuditReport:
    since: float
    until: float
    """Records written after this (``now - grace``) were not judged."""
    events: int = 0
    jobs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    unverifiable: int = 0
    """(event, listener) pairs not judged: the listener changed around the event."""
    unreadable: list[str] = field(default_factory=list)
    """Locations of records that could not be decoded (they are parked, not lost)."""
    missing_jobs: list[MissingJob] = field(default_factory=list)
    missing_outcomes: list[MissingOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing_jobs and not self.missing_outcomes


@dataclass(frozen=True)
class _Version:
    at: float
    listener: ListenerSpec | None  # None: deleted, or unreadable
    spec: dict[str, Any] = field(default_factory=dict)
    """The listener's compiled match spec."""


def judge(
    *,
    events: Sequence[StoredRecord],
    listeners: Sequence[StoredRecord],
    deliveries: Sequence[StoredRecord],
    tiers: dict[float, Sequence[StoredRecord]],
    attempts: Sequence[StoredRecord],
    dead: Sequence[StoredRecord],
    parked: Sequence[StoredRecord],
    since: float,
    now: float,
    grace: float = 60.0,
    settle: float = 5.0,
) -> AuditReport:
    """The audit of records already read; ``tiers`` maps each tier's delay to its records."""
    until = now - grace
    report = AuditReport(since=since, until=until)

    def read(record: StoredRecord, kind: type[Event] | type[DeliveryJob] | type[Attempt]) -> object:
        try:
            return decode(
                record.value or b"",
                kind,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        except DecodeError:
            report.unreadable.append(record.location)
            return None

    # Each listener's history: its versions in the order they were written.
    history: dict[str, list[_Version]] = {}
    for record in sorted(listeners, key=lambda r: (r.timestamp, r.offset)):
        key = (record.key or b"").decode(errors="replace")
        version = _Version(record.timestamp, None)
        if record.value is not None:
            try:
                spec = decode(record.value, ListenerSpec, topic=record.topic, offset=record.offset)
                version = _Version(record.timestamp, spec, spec_from_json(spec.match))
            except DecodeError:
                pass
        history.setdefault(key, []).append(version)

    # Every job's records, in order: where it was, when it was due.
    job_seen: dict[str, tuple[float, str, str]] = {}  # id -> (due, location, listener id)
    judged: set[str] = set()  # jobs written to the deliveries topic within the window
    sources = [(0.0, deliveries, True), *((delay, rs, False) for delay, rs in tiers.items())]
    for delay, records, is_deliveries in sources:
        for record in records:
            job = read(record, DeliveryJob)
            if not isinstance(job, DeliveryJob):
                continue
            due = max(record.timestamp + delay, job.not_before or 0.0)
            if is_deliveries and since <= record.timestamp <= until:
                judged.add(job.id)
            if job.id not in job_seen or due >= job_seen[job.id][0]:
                job_seen[job.id] = (due, record.location, job.listener_id)

    finished: dict[str, Outcome] = {}
    for record in attempts:
        attempt = read(record, Attempt)
        if isinstance(attempt, Attempt) and attempt.outcome != "retrying":
            finished[attempt.job_id] = attempt.outcome  # delivered, dead or dropped
    ended: tuple[tuple[Outcome, Sequence[StoredRecord]], ...] = (("dead", dead), ("parked", parked))
    for kind, records in ended:
        for record in records:
            try:
                job = decode(record.value or b"", DeliveryJob)
            except DecodeError:
                continue  # a parked event or an unreadable record: not a job
            finished.setdefault(job.id, kind)

    # Every event has its jobs.
    for record in events:
        if not since <= record.timestamp <= until:
            continue
        event = read(record, Event)
        if not isinstance(event, Event):
            continue
        report.events += 1
        for listener_id, versions in history.items():
            current = _in_effect(versions, record.timestamp)
            if current is None or current.listener is None:
                continue
            listener = current.listener
            if not listener.active or listener.hook != event.hook:
                continue
            if not deepmatch(current.spec, event.data):
                continue
            if _changed_near(versions, record.timestamp, settle):
                report.unverifiable += 1
                continue
            expected = job_id(event.id, listener_id)
            if expected not in job_seen:
                report.missing_jobs.append(
                    MissingJob(event.id, listener_id, expected, record.location)
                )

    # Every job has an outcome.
    for jid, (due, location, listener_id) in job_seen.items():
        if jid not in judged:
            continue  # a tier record of an older job, or a job still on its way
        report.jobs += 1
        outcome = finished.get(jid)
        if outcome is None and due > until:
            outcome = "waiting"
        if outcome is None:
            report.missing_outcomes.append(MissingOutcome(jid, listener_id, location, due))
        else:
            report.outcomes[outcome] += 1
    return report


def _in_effect(versions: list[_Version], at: float) -> _Version | None:
    current = None
    for version in versions:
        if version.at > at:
            break
        current = version
    return current


def _changed_near(versions: list[_Version], at: float, settle: float) -> bool:
    return any(abs(version.at - at) <= settle for version in versions)


def audit(
    settings: Settings,
    since: float,
    *,
    now: float | None = None,
    grace: float = 60.0,
    settle: float = 5.0,
    timeout: float = 120.0,
) -> AuditReport:
    """Read every topic of the pipeline from ``since`` (Unix time) and :func:`judge` it.

    The listeners topic is read whole: a listener made long before ``since`` still
    applies. The outcome topics (retry tiers, attempts, dead letters, parked) are read
    from the oldest event among the jobs written since then: a job written again after
    a rebalance (the same id) may have been delivered before ``since``.
    """
    names = TopicNames(settings.topic_prefix)
    moment = time.time() if now is None else now
    first = read_since(
        settings, {names.listeners: 0.0, names.events: since, names.deliveries: since}, timeout
    )
    oldest = since
    for record in first[names.deliveries]:
        try:
            job = decode(record.value or b"", DeliveryJob)
        except DecodeError:
            continue  # judge() reports it
        oldest = min(oldest, job.event.occurred_at.timestamp())
    tiers = {delay: names.deliveries_retry(delay) for delay in set(settings.retry_schedule)}
    outcome_topics = [*tiers.values(), names.attempts, names.dead, names.parked]
    later = read_since(settings, dict.fromkeys(outcome_topics, oldest), timeout)
    return judge(
        events=first[names.events],
        listeners=first[names.listeners],
        deliveries=first[names.deliveries],
        tiers={delay: later[topic] for delay, topic in tiers.items()},
        attempts=later[names.attempts],
        dead=later[names.dead],
        parked=later[names.parked],
        since=since,
        now=moment,
        grace=grace,
        settle=settle,
    )
