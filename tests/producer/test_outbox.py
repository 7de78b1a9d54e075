"""The transactional outbox: an event exists exactly when its change does, and reaches
Kafka whatever happens to the broker or the web process after the commit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from durian import conf
from durian.embedded import EmbeddedBroker, free_port
from durian.records import Event, decode
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames
from producer.models import OutboxEvent
from producer.outbox import SHARDS, Relay, shard_of
from producer.registry import hooks
from tests.conftest import read_topic, wait_for
from tests.producer.conftest import database_url, relay_outbox
from tests.testapp.models import Person

pytestmark = pytest.mark.django_db(transaction=True)


def published(settings: conf.Settings) -> list[Event]:
    records = read_topic(settings, TopicNames(settings.topic_prefix).events)
    return [decode(value, Event) for _, value in records if value is not None]


class RelayThread:
    """A relay running beside the test, as ``manage.py durian_relay`` runs beside a site."""

    def __init__(self, settings: conf.Settings, **options: float) -> None:
        self.relay = Relay(settings, poll_interval=0.2, **options)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.relay.run, daemon=True)
        self.thread.start()

    def stop(self) -> int:
        self.relay.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.relay.published


@pytest.fixture
def relays() -> Iterator[list[RelayThread]]:
    started: list[RelayThread] = []
    yield started
    for relay in started:
        relay.stop()


def test_the_event_is_written_in_the_transaction_of_its_change(durian_site: conf.Settings) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Person.objects.create(name="Ghost")
        assert OutboxEvent.objects.count() == 1  # beside the row, in the same transaction
        raise RuntimeError("roll back")
    assert OutboxEvent.objects.count() == 0
    joe = Person.objects.create(name="Joe")
    (row,) = OutboxEvent.objects.all()
    key = f"person:{joe.pk}".encode()
    assert (bytes(row.key), row.shard) == (key, shard_of(key))
    assert relay_outbox(durian_site) == 1
    assert OutboxEvent.objects.count() == 0  # deleted once acknowledged
    assert [(e.object_id, e.data["name"]) for e in published(durian_site)] == [(str(joe.pk), "Joe")]


def test_relays_share_the_shards_keep_each_objects_order_and_survive_a_rolling_restart(
    durian_site: conf.Settings, relays: list[RelayThread]
) -> None:
    def sharing() -> bool:
        held = [relay.relay.held for relay in relays]
        return all(held) and sum(map(len, held)) == SHARDS

    relays += [RelayThread(durian_site, rebalance_every=0.3) for _ in range(2)]
    wait_for(sharing, what="two relays to share the shards")
    people = [Person.objects.create(name="v0") for _ in range(24)]
    for version in range(1, 16):
        if version == 6:  # a rolling restart: a new relay starts, then an old one leaves
            relays.append(RelayThread(durian_site, rebalance_every=0.3))
            wait_for(sharing, what="the new relay to get shards")
        if version == 9:
            first = relays.pop(0).stop()
            assert first > 0
        for person in people:
            person.name = f"v{version}"
            person.save()
    wait_for(lambda: OutboxEvent.objects.count() == 0, timeout=30, what="the outbox to empty")
    counts = [relay.stop() for relay in relays]
    relays.clear()
    assert all(count > 0 for count in counts), counts  # every relay had shards

    seen: dict[str, list[str]] = {}
    for event in published(durian_site):
        names = seen.setdefault(str(event.object_id), [])
        if not names or names[-1] != event.data["name"]:  # a re-send repeats, never reorders
            names.append(event.data["name"])
    assert seen == {str(p.pk): [f"v{n}" for n in range(16)] for p in people}


def test_a_broker_away_longer_than_the_message_timeout_loses_nothing(
    relays: list[RelayThread], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port)
    broker.start()
    overrides = {
        "BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TOPIC_PREFIX": f"outage{port}",
        "EMBEDDED": True,
        "EVENTS_PARTITIONS": 2,
        "KAFKA_OPTIONS": {"message.timeout.ms": "1500"},
    }
    settings = conf.load(environ={}, overrides=overrides)
    try:
        TopicAdmin(settings).ensure()
        with override_settings(DURIAN=overrides), caplog.at_level(logging.WARNING):
            relays.append(RelayThread(settings))
            Person.objects.create(name="before")
            wait_for(lambda: OutboxEvent.objects.count() == 0, timeout=20, what="a first event")
            broker.stop()
            saved = [Person.objects.create(name=f"away-{n}").pk for n in range(20)]
            time.sleep(4)  # more than twice the message timeout
            assert "were not acknowledged" in caplog.text
            assert OutboxEvent.objects.count() == 20  # still here, nothing given up
            broker = EmbeddedBroker(port=port)  # back, empty (memory storage)
            broker.start()
            TopicAdmin(settings).ensure()
            wait_for(lambda: OutboxEvent.objects.count() == 0, timeout=60, what="the backlog")
        names = sorted({e.data["name"] for e in published(settings)})
        assert names == sorted(f"away-{n}" for n in range(20))
        assert {e.object_id for e in published(settings)} == {str(pk) for pk in saved}
    finally:
        for relay in relays:
            relay.stop()
        relays.clear()
        broker.stop()


def test_a_web_process_killed_right_after_its_commits_loses_nothing(
    durian_site: conf.Settings,
) -> None:
    env = {
        **os.environ,
        "DURIAN_TEST_DATABASE_URL": database_url(),
        "DURIAN_BOOTSTRAP_SERVERS": durian_site.bootstrap_servers,
        "DURIAN_TOPIC_PREFIX": durian_site.topic_prefix,
    }
    web = subprocess.run(
        [sys.executable, "-m", "tests.web_process", "40", "killed"],
        env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert web.returncode == -9 and b"committed" in web.stdout, web.stderr.decode()
    assert relay_outbox(durian_site) == 40
    names = sorted(e.data["name"] for e in published(durian_site))
    assert names == sorted(f"killed-{n}" for n in range(40))


def test_a_record_kafka_refuses_for_good_is_kept_aside_and_goes_after_the_fix(
    durian_site: conf.Settings, caplog: pytest.LogCaptureFixture
) -> None:
    Person.objects.create(name="small")
    hooks.get("invoice.paid").send(number="big", amount="x" * 1500)
    Person.objects.create(name="small too")
    strict = conf.load(
        environ={},
        overrides={
            "BOOTSTRAP_SERVERS": durian_site.bootstrap_servers,
            "TOPIC_PREFIX": durian_site.topic_prefix,
            "KAFKA_OPTIONS": {"message.max.bytes": "1000"},  # the smallest librdkafka takes
        },
    )
    assert Relay(strict).run(drain=True) == 2
    assert "refused outbox event" in caplog.text
    (kept,) = OutboxEvent.objects.all()
    assert "too large" in kept.refused.lower()
    out = StringIO()
    call_command("durian_relay", "--status", stdout=out)
    assert "waiting: 0  refused: 1" in out.getvalue()

    call_command("durian_relay", "--retry-refused", stdout=StringIO())
    assert relay_outbox(durian_site) == 1
    names = [e.data.get("name") or e.data["number"] for e in published(durian_site)]
    assert sorted(names) == ["big", "small", "small too"]


def test_on_the_direct_path_a_failed_publish_breaks_neither_the_request_nor_other_callbacks(
    durian_site: conf.Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from django.conf import settings as django_settings

    direct = {**django_settings.DURIAN, "OUTBOX": False,
              "KAFKA_OPTIONS": {"message.max.bytes": "1000"}}  # fmt: skip
    after: list[str] = []
    with override_settings(DURIAN=direct):
        with transaction.atomic():
            Person.objects.create(name="fine before")
            hooks.get("invoice.paid").send(number="refused", amount="x" * 1500)
            transaction.on_commit(lambda: after.append("ran"))
        Person.objects.create(name="fine")
    assert after == ["ran"]
    assert "could not publish" in caplog.text
    assert OutboxEvent.objects.count() == 0
    assert sorted(e.data["name"] for e in published(durian_site)) == ["fine", "fine before"]


def test_every_key_has_a_shard_and_shards_spread() -> None:
    shards = {shard_of(f"person:{n}".encode()) for n in range(1000)}
    assert shards == set(range(SHARDS))
