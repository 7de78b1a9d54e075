"""``durian audit`` against real topics: a job that went missing is found and named."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from durian import conf
from durian.kafka import confluent_config
from durian.records import (
    Attempt,
    DeliveryJob,
    Event,
    ListenerSpec,
    Record,
    encode,
    event_key,
    job_id,
    listener_key,
)
from durian.signing import generate_secret
from durian.topics import TopicNames
from tests.conftest import durian_cli as durian

pytestmark = pytest.mark.integration


class Writer:
    """Writes records as the pipeline would, at chosen times."""

    def __init__(self, settings: conf.Settings) -> None:
        self.names = TopicNames(settings.topic_prefix)
        self.producer = Producer(confluent_config(settings, "writer"))

    def write(self, topic: str, key: bytes, record: Record, ago: float) -> None:
        stamp = int((time.time() - ago) * 1000)
        self.producer.produce(topic, key=key, value=encode(record), timestamp=stamp)
        assert self.producer.flush(10) == 0

    def delivered(self, job: DeliveryJob, ago: float) -> None:
        attempt = Attempt(
            job_id=job.id, listener_id=job.listener_id, event_id=job.event.id, hook="person",
            attempt=1, at=datetime.now(UTC), outcome="delivered", status_code=204,
        )  # fmt: skip
        self.write(self.names.attempts, listener_key(job.listener_id), attempt, ago)


def test_audit_names_an_event_without_its_job_and_a_job_without_an_outcome(
    topics: conf.Settings,
) -> None:
    w = Writer(topics)
    listener = ListenerSpec(
        id="lst_audit", hook="person", url="https://example.com/hook", secret=generate_secret()
    )
    w.write(w.names.listeners, listener_key(listener.id), listener, ago=120)
    events = [
        Event(id=f"evt_audit{n}", hook="person", occurred_at=datetime.now(UTC), data={"n": n})
        for n in range(3)
    ]
    jobs = [
        DeliveryJob(
            id=job_id(e.id, listener.id),
            event=e,
            listener_id=listener.id,
            listener_version=listener.version,
        )
        for e in events
    ]
    for event in events:
        w.write(w.names.events, event_key("person", event.id), event, ago=60)
    # Event 0 went all the way; event 1's job was never written; event 2's job never tried.
    w.write(w.names.deliveries, listener_key(listener.id), jobs[0], ago=59)
    w.delivered(jobs[0], ago=58)
    w.write(w.names.deliveries, listener_key(listener.id), jobs[2], ago=59)

    found = durian(topics, "audit", "--since", "10m", "--grace", "0")
    assert found.exit_code == 1, found.output
    assert "3 event(s), 2 job(s) (delivered 1)" in found.output
    assert f"MISSING JOB   event evt_audit1 ({w.names.events}[" in found.output
    assert f"no job {jobs[1].id}" in found.output
    assert f"NO OUTCOME    job {jobs[2].id} of listener lst_audit: last seen at " in found.output

    w.write(w.names.deliveries, listener_key(listener.id), jobs[1], ago=1)
    w.delivered(jobs[1], ago=1)
    w.delivered(jobs[2], ago=1)
    clean = durian(topics, "audit", "--since", "10m", "--grace", "0")
    assert clean.exit_code == 0, clean.output
    assert "ok: every event has its jobs, every job an outcome" in clean.output
    # Records younger than the grace are not judged yet.
    waiting = durian(topics, "audit", "--since", "10m", "--grace", "3600")
    assert "0 event(s), 0 job(s) (none)" in waiting.output and waiting.exit_code == 0


def test_a_job_written_again_after_its_delivery_counts_as_delivered(
    topics: conf.Settings,
) -> None:
    # A stream worker that re-reads events after a rebalance writes their jobs again (the
    # same ids); the delivery workers skip them as delivered, before the audited window.
    w = Writer(topics)
    listener = ListenerSpec(
        id="lst_again", hook="person", url="https://example.com/hook", secret=generate_secret()
    )
    w.write(w.names.listeners, listener_key(listener.id), listener, ago=300)
    event = Event(
        id="evt_again", hook="person", occurred_at=datetime.fromtimestamp(time.time() - 120, UTC),
        data={},
    )  # fmt: skip
    job = DeliveryJob(
        id=job_id(event.id, listener.id),
        event=event,
        listener_id=listener.id,
        listener_version=listener.version,
    )
    w.write(w.names.events, event_key("person", event.id), event, ago=120)
    w.write(w.names.deliveries, listener_key(listener.id), job, ago=119)
    w.delivered(job, ago=118)
    w.write(w.names.deliveries, listener_key(listener.id), job, ago=5)  # written again

    result = durian(topics, "audit", "--since", "1m", "--grace", "0")
    assert result.exit_code == 0, result.output
    assert "0 event(s), 1 job(s) (delivered 1)" in result.output
