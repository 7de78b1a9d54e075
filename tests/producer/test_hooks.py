"""Hooks publish events after commit, with exactly the fields they provide."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from django.core.files.base import ContentFile
from django.db import transaction

from durian import conf
from durian.records import Event, decode
from durian.topics import TopicNames
from producer import publish
from producer.hooks import Hook, ModelHook
from producer.registry import HookRegistry, hooks
from tests.conftest import read_topic
from tests.producer.conftest import relay_outbox
from tests.testapp.models import Person

pytestmark = pytest.mark.django_db(transaction=True)


def events(settings: conf.Settings) -> list[Event]:
    relay_outbox(settings)
    records = read_topic(settings, TopicNames(settings.topic_prefix).events)
    return [decode(value, Event) for _, value in records if value is not None]


def test_saving_a_model_publishes_exactly_the_provided_fields(durian_site: conf.Settings) -> None:
    friend = Person.objects.create(name="Ann")
    joe = Person(
        name="Joe", address="Oslo", secret="never sent", born=dt.date(1990, 5, 17),
        balance=decimal.Decimal("12.50"), token=uuid.UUID(int=7), friend=friend,
    )  # fmt: skip
    joe.avatar.save("joe.png", ContentFile(b"png"), save=False)
    joe.save()
    published = [e for e in events(durian_site) if e.object_id == str(joe.pk)]
    assert len(published) == 1
    event = published[0]
    assert event.hook == "person"
    assert set(event.data) == set(PersonHookFields)
    assert "secret" not in event.data and "id" not in event.data
    assert event.data["name"] == "Joe"
    assert event.data["born"] == "1990-05-17"
    assert event.data["balance"] == "12.50"
    assert event.data["token"] == str(uuid.UUID(int=7))
    assert event.data["avatar"].startswith("joe")
    assert event.data["friend"] == friend.pk
    assert dt.datetime.fromisoformat(event.data["updated"]) == joe.updated


PersonHookFields = ["name", "address", "born", "balance", "token", "avatar", "friend", "updated"]


def test_events_are_keyed_per_object_so_changes_stay_in_order(durian_site: conf.Settings) -> None:
    joe = Person.objects.create(name="Joe")
    for n in range(5):
        joe.address = f"street {n}"
        joe.save()
    relay_outbox(durian_site)
    records = read_topic(durian_site, TopicNames(durian_site.topic_prefix).events)
    mine = [decode(v, Event) for k, v in records if k == f"person:{joe.pk}".encode() and v]
    assert [e.data["address"] for e in mine] == ["", *[f"street {n}" for n in range(5)]]


def test_a_rolled_back_transaction_sends_nothing(durian_site: conf.Settings) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Person.objects.create(name="Ghost")
        raise RuntimeError("roll back")
    Person.objects.create(name="Real")
    names = [e.data["name"] for e in events(durian_site)]
    assert names == ["Real"]


def test_events_wait_for_the_outermost_commit(durian_site: conf.Settings) -> None:
    with transaction.atomic():
        Person.objects.create(name="Inner")
        assert events(durian_site) == []
    assert [e.data["name"] for e in events(durian_site)] == ["Inner"]


def test_delete_hooks_fire_on_post_delete(durian_site: conf.Settings) -> None:
    joe = Person.objects.create(name="Joe")
    pk = joe.pk
    joe.delete()
    deleted = [e for e in events(durian_site) if e.hook == "person.deleted"]
    assert [(e.object_id, e.data) for e in deleted] == [(str(pk), {"name": "Joe"})]


def test_custom_hooks_send_their_payload(durian_site: conf.Settings) -> None:
    hook = hooks.get("invoice.paid")
    hook.send(number="F-1", amount=decimal.Decimal("9.99"), internal="dropped")
    (event,) = events(durian_site)
    assert (event.hook, event.data) == ("invoice.paid", {"number": "F-1", "amount": "9.99"})


def test_fixtures_loaded_raw_are_not_events(durian_site: conf.Settings) -> None:
    from django.core import serializers

    fields = '{"name": "Fixture", "updated": "2026-01-01T00:00:00Z"}'
    data = f'[{{"model": "testapp.person", "pk": 9000, "fields": {fields}}}]'
    for obj in serializers.deserialize("json", data):
        obj.save()
    assert events(durian_site) == []


def test_a_hook_without_provides_args_sends_every_concrete_field() -> None:
    hook = ModelHook(name="everything", model=Person)
    assert hook.fields() == [f.name for f in Person._meta.concrete_fields]


def test_registry_registers_looks_up_and_unregisters() -> None:
    registry = HookRegistry()
    hook = registry.register(Hook(name="custom.event"))
    assert "custom.event" in registry and registry.get("custom.event") is hook
    assert registry.register(Hook(name="custom.event")) is hook  # same class: no conflict
    registry.unregister("custom.event")
    assert "custom.event" not in registry
    with pytest.raises(Exception, match=r"no hook named 'custom\.event'"):
        registry.get("custom.event")


def test_autodiscovery_registered_the_test_apps_hooks() -> None:
    assert {"person", "person.deleted", "invoice.paid"} <= {hook.name for hook in hooks}


def test_a_publish_failure_is_raised_on_flush_not_swallowed(durian_site: conf.Settings) -> None:
    publisher = publish.Publisher(
        conf.load(environ={}, overrides={"BOOTSTRAP_SERVERS": durian_site.bootstrap_servers})
    )
    big = b"x" * 2_000_000  # over message.max.bytes: refused by the client
    with pytest.raises(Exception, match="cannot publish"):
        publisher.publish(TopicNames(durian_site.topic_prefix).events, b"k", big)
    assert publisher.stats.failed == 1


def test_an_unreachable_broker_fails_the_flush(caplog: pytest.LogCaptureFixture) -> None:
    from durian.embedded import free_port

    settings = conf.load(
        environ={},
        overrides={
            "BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "KAFKA_OPTIONS": {"message.timeout.ms": "1000"},
        },
    )
    publisher = publish.Publisher(settings)
    publisher.publish("durian.events", b"k", b"{}")
    with pytest.raises(Exception, match="not published"):
        publisher.flush(timeout=5)
    assert publisher.stats.failed == 1
    assert "durian could not publish a record" in caplog.text


def test_an_event_over_the_limit_is_refused_before_the_commit_and_reported_once(
    durian_site: conf.Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from django.conf import settings as django_settings
    from django.test import override_settings

    from durian.exceptions import EventTooLarge

    limited = {**django_settings.DURIAN, "MAX_EVENT_BYTES": 4096}
    with override_settings(DURIAN=limited):
        too_large = pytest.raises(EventTooLarge, match="more than max_event_bytes")
        with too_large, transaction.atomic():
            Person.objects.create(name="Joe")
            Hook(name="person").send(note="x" * 10_000)
        small = Person.objects.create(name="Ann", address="Oslo")
        publish.flush()  # nothing failed on its way to Kafka: no second report
    assert not Person.objects.filter(name="Joe").exists()  # rolled back with its event
    published = events(durian_site)
    assert [e.object_id for e in published] == [str(small.pk)]  # not even Joe's own event
    assert "could not publish" not in caplog.text


def test_a_site_declares_its_hooks_when_its_relay_starts_and_on_request(
    durian_site: conf.Settings,
) -> None:
    from io import StringIO

    from django.core.management import call_command

    from durian.hook_store import read_hooks

    assert read_hooks(durian_site) == {}
    relay_outbox(durian_site)
    declared = read_hooks(durian_site)
    assert "person" in declared and "name" in declared["person"].fields
    out = StringIO()
    call_command("durian_hooks", stdout=out)
    assert "announced" in out.getvalue() and "person" in out.getvalue()
    assert set(read_hooks(durian_site)) == {hook.name for hook in hooks}


def test_the_seed_api_refuses_a_listener_for_a_hook_that_is_not_registered(
    durian_site: conf.Settings,
) -> None:
    from durian.exceptions import InvalidListener

    with pytest.raises(InvalidListener, match="hook 'persn' is not registered"):
        Hook(name="persn").listener(url="https://e.com/").save()
