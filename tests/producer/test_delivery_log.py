"""The delivery log: attempts from the real attempts topic into PostgreSQL, with retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer

from durian import conf
from durian.kafka import confluent_config
from durian.records import Attempt, encode
from durian.topics import TopicNames
from producer.log import AttemptLog
from producer.models import DeliveryAttempt

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def attempt(n: int, at: datetime) -> Attempt:
    return Attempt(
        job_id=f"msg_{n}", listener_id="lst_1", event_id=f"evt_{n}", hook="person",
        attempt=1, at=at, outcome="delivered", status_code=200, latency_ms=3.5,
    )  # fmt: skip


def test_attempts_are_stored_once_bad_records_skipped_old_ones_pruned(
    durian_site: conf.Settings, caplog: pytest.LogCaptureFixture
) -> None:
    topic = TopicNames(durian_site.topic_prefix).attempts
    now = datetime.now(UTC)
    producer = Producer(confluent_config(durian_site, "writer"))
    producer.produce(topic, key=b"lst_1", value=encode(attempt(1, now)))
    producer.produce(topic, key=b"lst_1", value=b"{not an attempt")
    producer.produce(topic, key=b"lst_1", value=encode(attempt(2, now - timedelta(days=40))))
    assert producer.flush(10) == 0

    assert AttemptLog(durian_site, retention_days=60).run(drain=True) == 2
    assert "skipping an unreadable attempt record" in caplog.text
    stored = DeliveryAttempt.objects.get(job_id="msg_1")
    assert (stored.outcome, stored.status_code, stored.latency_ms) == ("delivered", 200, 3.5)
    assert stored.source.startswith(f"{topic}[")
    # A second reader of the same group starts after the committed batch: nothing twice.
    assert AttemptLog(durian_site, retention_days=60).run(drain=True) == 0
    assert DeliveryAttempt.objects.count() == 2

    assert AttemptLog(durian_site, retention_days=30).prune() == 1
    assert list(DeliveryAttempt.objects.values_list("job_id", flat=True)) == ["msg_1"]
