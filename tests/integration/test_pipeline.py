"""End to end: Django save -> events -> Faust matcher join -> jobs -> httpx workers -> signed POST.

Real processes (durian-stream, durian-deliver), the embedded broker, PostgreSQL
and an HTTP receiver that checks every request with the public
``standardwebhooks`` verifier.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter

import pytest
import standardwebhooks
from confluent_kafka import Producer
from django.db import transaction

from durian.kafka import confluent_config
from durian.match import Any, Contains, Endswith, Like, Startswith
from durian.records import ListenerSpec
from durian.topics import TopicNames
from producer import publish
from producer.listeners import delete_listener
from producer.registry import hooks
from tests.conftest import read_parked, read_topic, wait_for
from tests.integration.conftest import Pipeline
from tests.receiver import Received, Receiver
from tests.testapp.models import Person
from tests.testapp.webhooks import PersonHook

pytestmark = pytest.mark.django_db(transaction=True)

FIRST = 90.0  # the first delivery waits for both workers to join and recover
LATER = 30.0


def verified(request: Received, listener: ListenerSpec) -> dict[str, object]:
    payload = standardwebhooks.Webhook(listener.secret).verify(request.body, request.headers)
    assert isinstance(payload, dict)
    return payload


def live_invoice_listener(receiver: Receiver, path: str, tok: str) -> ListenerSpec:
    """Save a listener for invoices numbered ``tok-...`` and wait until it is live.

    A new listener applies to events the stream processor handles after the
    listener record reaches it (listener records and events are separate
    topics), so tests probe before they send what they count.
    """
    hook = hooks.get("invoice.paid")
    listener = hook.listener(url=receiver.url(path)).match(number=Startswith(tok)).save()

    def probe() -> bool:
        with transaction.atomic():
            hook.send(number=f"{tok}-probe", amount=0)
        return bool(receiver.to(path))

    wait_for(probe, FIRST, interval=1.0, what=f"the listener at {path} to go live")
    return listener


def live_person_listener(receiver: Receiver, path: str, tok: str) -> ListenerSpec:
    """A listener for people at address ``tok``, live (probed with people named "probe")."""
    listener = PersonHook().listener(url=receiver.url(path)).match(address=tok).save()

    def probe() -> bool:
        Person.objects.create(name="probe", address=tok)
        return bool(receiver.to(path))

    wait_for(probe, FIRST, interval=1.0, what=f"the listener at {path} to go live")
    return listener


def counted(receiver: Receiver, path: str) -> list[Received]:
    """Requests to ``path`` other than probes."""
    return [
        r for r in receiver.to(path) if not json.loads(r.body)["data"]["number"].endswith("probe")
    ]


def names(receiver: Receiver, path: str) -> list[str]:
    """Names of the people delivered to ``path``, probes left out."""
    delivered = (json.loads(r.body)["data"]["name"] for r in receiver.to(path))
    return sorted(name for name in delivered if name != "probe")


def test_every_matcher_kind_filters_and_each_delivery_verifies(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    tok = uuid.uuid4().hex[:8]
    conditions = {
        "/is": {"name": f"{tok}-Joe"},
        "/startswith": {"name": Startswith(f"{tok}-J")},
        "/endswith": {"name": Endswith("-Ann")},
        "/contains": {"name": Contains("oe")},
        "/like": {"name": Like(r"-(Joe|Ann)$")},
        "/any": {"nickname": Any()},
        "/none": {"name": "nobody"},
    }
    listeners = {
        path: PersonHook()
        .listener(url=receiver.url(f"/{tok}{path}"))
        .match(address=tok, **cond)
        .save()
        for path, cond in conditions.items()
    }
    # The listeners topic is one ordered partition: once a listener saved last
    # is live, every listener above is too.
    live_person_listener(receiver, f"/{tok}/canary", tok)
    for name in ("Joe", "Jim", "Ann", "Bob"):
        Person.objects.create(name=f"{tok}-{name}", address=tok, secret="never sent")

    expected = {
        "/is": ["Joe"],
        "/startswith": ["Jim", "Joe"],
        "/endswith": ["Ann"],
        "/contains": ["Joe"],
        "/like": ["Ann", "Joe"],
        "/any": ["Ann", "Bob", "Jim", "Joe"],
    }
    for path, want in expected.items():
        full = [f"{tok}-{n}" for n in want]
        wait_for(
            lambda p=path, f=full: names(receiver, f"/{tok}{p}") == f,
            LATER,
            what=f"{path} (received so far: {sorted(r.path for r in receiver.requests)})",
        )
    assert receiver.to(f"/{tok}/none") == []

    provided = set(PersonHook.provides_args or [])
    for path, listener in listeners.items():
        for request in receiver.to(f"/{tok}{path}"):
            payload = verified(request, listener)  # probes included: they are real deliveries
            assert payload["type"] == "person"
            assert isinstance(payload["data"], dict) and set(payload["data"]) == provided
            assert request.headers["Webhook-Id"].startswith("msg_")


def test_a_rolled_back_transaction_delivers_nothing(pipeline: Pipeline, receiver: Receiver) -> None:
    tok = uuid.uuid4().hex[:8]
    path = f"/{tok}/rollback"
    live_person_listener(receiver, path, tok)
    with pytest.raises(RuntimeError), transaction.atomic():
        Person.objects.create(name="ghost", address=tok)
        raise RuntimeError("roll back")
    Person.objects.create(name="sentinel", address=tok)
    wait_for(lambda: "sentinel" in names(receiver, path), LATER, what="the sentinel")
    assert "ghost" not in names(receiver, path)


def test_deleting_a_listener_stops_its_deliveries(pipeline: Pipeline, receiver: Receiver) -> None:
    tok = uuid.uuid4().hex[:8]
    gone, control = f"/{tok}/deleted", f"/{tok}/control"
    doomed = live_person_listener(receiver, gone, tok)
    delete_listener(doomed.id)
    # Saved after the tombstone on the one-partition listeners topic: once the
    # control listener is live, the tombstone has been applied too.
    live_person_listener(receiver, control, tok)
    Person.objects.create(name="after", address=tok)
    wait_for(lambda: "after" in names(receiver, control), LATER, what="'after' at the control")
    assert "after" not in names(receiver, gone)


def test_custom_hooks_are_delivered_with_the_same_id_header_per_job(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    tok = uuid.uuid4().hex[:8]
    path = f"/{tok}/invoices"
    listener = live_invoice_listener(receiver, path, tok)
    with transaction.atomic():
        for n in range(20):
            hooks.get("invoice.paid").send(number=f"{tok}-{n}", amount=n)
    wait_for(lambda: len(counted(receiver, path)) >= 20, LATER, what="20 invoices")
    ids = Counter(r.headers["Webhook-Id"] for r in counted(receiver, path))
    assert len(ids) == 20 and set(ids.values()) == {1}
    numbers = sorted(
        str(verified(r, listener)["data"]["number"])  # type: ignore[index]
        for r in counted(receiver, path)
    )
    assert numbers == sorted(f"{tok}-{n}" for n in range(20))


def test_two_delivery_workers_share_the_group_and_every_job_arrives(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    tok = uuid.uuid4().hex[:8]
    pipeline.start("deliver-2", ["durian-deliver", "-v"])
    wait_for(lambda: "assigned" in pipeline.log("deliver-2"), LATER, what="the 2nd worker's share")
    paths = [f"/{tok}/{n}" for n in range(8)]  # 8 listeners spread over 4 partitions
    for path in paths:
        live_invoice_listener(receiver, path, tok)
    with transaction.atomic():
        for n in range(50):
            hooks.get("invoice.paid").send(number=f"{tok}-{n}", amount=n)
    total = len(paths) * 50
    wait_for(lambda: sum(len(counted(receiver, p)) for p in paths) >= total, LATER, what="all")
    ids = {r.headers["Webhook-Id"] for p in paths for r in counted(receiver, p)}
    assert len(ids) == total
    assert "assigned" in pipeline.log("deliver-1") and "assigned" in pipeline.log("deliver-2")


@pytest.mark.parametrize("stop", ["terminate", "kill", "rolling"])
def test_no_event_is_skipped_across_a_stream_worker_restart(
    pipeline: Pipeline, receiver: Receiver, stop: str
) -> None:
    """SIGTERM, kill -9 while events are in flight, or a rolling restart (the new worker
    starts as the old one is told to stop): every event is delivered (at least once; a
    job made twice has one id and is sent once)."""
    tok = uuid.uuid4().hex[:8]
    path = f"/{tok}/restart"
    hook = hooks.get("invoice.paid")
    live_invoice_listener(receiver, path, tok)
    with transaction.atomic():
        for n in range(30):
            hook.send(number=f"{tok}-a{n}", amount=n)
    wait_for(lambda: len(counted(receiver, path)) >= 30, LATER, what="the first 30")
    if stop in ("kill", "rolling"):
        with transaction.atomic():
            for n in range(30):
                hook.send(number=f"{tok}-c{n}", amount=n)  # in flight when the worker goes
        publish.flush()
    if stop == "rolling":
        old = pipeline.processes.pop("stream")
        old.terminate()
        pipeline.start("stream", ["durian-stream", "-v"])
        try:
            assert old.wait(60) == 0
        finally:
            if old.poll() is None:  # never left behind
                old.kill()
                old.wait(30)
    elif stop == "kill":
        pipeline.kill("stream")
    else:
        assert pipeline.stop("stream") == 0
    with transaction.atomic():
        for n in range(30):
            hook.send(number=f"{tok}-b{n}", amount=n)  # while the new worker starts
    if stop != "rolling":
        pipeline.start("stream", ["durian-stream", "-v"])

    def delivered() -> set[str]:
        return {json.loads(r.body)["data"]["number"] for r in counted(receiver, path)}

    expected = {
        f"{tok}-{x}{n}" for x in ("ab" if stop == "terminate" else "abc") for n in range(30)
    }
    try:
        wait_for(lambda: delivered() >= expected, FIRST, what="every event after the restart")
    except BaseException:
        missing = sorted(expected - delivered())
        publish.flush()
        names = TopicNames(pipeline.settings.topic_prefix)
        on_events = {
            json.loads(value)["data"]["number"]
            for _, value in read_topic(pipeline.settings, names.events)
            if value and b"invoice.paid" in value
        }
        as_jobs = {
            json.loads(value)["event"]["data"]["number"]
            for _, value in read_topic(pipeline.settings, names.deliveries)
            if value and b"invoice.paid" in value
        }
        where = {n: (n in on_events, n in as_jobs) for n in missing}
        raise AssertionError(
            f"{len(missing)} event(s) never delivered: {missing}; "
            f"(on the events topic, as a job on the deliveries topic): {where}"
        ) from None
    assert delivered() == expected
    # Re-processed events make the same jobs again; the delivery side sends each id once.
    ids = Counter(r.headers["Webhook-Id"] for r in counted(receiver, path))
    assert max(ids.values()) == 1


def test_a_malformed_record_in_every_topic_is_parked_and_the_workers_go_on(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    names = TopicNames(pipeline.settings.topic_prefix)
    garbage = b'{"type": "not a durian record"'
    consumed = [names.events, names.deliveries] + [
        names.deliveries_retry(delay) for delay in sorted(set(pipeline.settings.retry_schedule))
    ]
    producer = Producer(confluent_config(pipeline.settings, "producer"))
    for topic in [*consumed, names.listeners]:
        producer.produce(topic, key=b"lst_garbage", value=garbage)
    assert producer.flush(10) == 0

    def parked_sources() -> set[str]:
        records = read_parked(pipeline.settings, names.parked)
        return {source.rsplit("[", 1)[0] for source in records}

    wait_for(lambda: parked_sources() >= set(consumed), LATER, interval=0.5, what="all parked")
    # The unreadable listener record is skipped, and named where it is.
    named = rf"unreadable listener record ignored: .*\(at {re.escape(names.listeners)}\[0\]@\d+\)"
    wait_for(lambda: re.search(named, pipeline.log("stream")), LATER, what="the bad listener")
    # Both workers are alive and still deliver.
    tok = uuid.uuid4().hex[:8]
    live_invoice_listener(receiver, f"/{tok}/after-garbage", tok)
    assert all(process.poll() is None for process in pipeline.processes.values())


def test_a_stream_worker_reads_its_table_before_it_starts_then_follows_it(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    """A starting stream worker reads the listeners topic itself, then Faust goes on from
    where it stopped: what changed while no worker ran counts, and so does what
    changes after it started."""
    tok = uuid.uuid4().hex[:8]
    live_person_listener(receiver, f"/{tok}/kept", f"{tok}-kept")
    moved = live_person_listener(receiver, f"/{tok}/moved", f"{tok}-old")
    gone = live_person_listener(receiver, f"/{tok}/gone", f"{tok}-gone")
    assert pipeline.stop("stream") == 0
    PersonHook().listener(url=moved.url, id=moved.id).match(address=f"{tok}-new").save()
    delete_listener(gone.id)
    producer = Producer(confluent_config(pipeline.settings, "producer"))
    producer.produce(
        TopicNames(pipeline.settings.topic_prefix).listeners, key=b"lst_bad", value=b"{"
    )
    assert producer.flush(10) == 0
    before = pipeline.log("stream")
    pipeline.start("stream", ["durian-stream", "-v"])
    ready = r"listener table ready: \d+ active listener\(s\); (\d+) record\(s\) read before start"

    def preloaded() -> int:
        found = re.search(ready, pipeline.log("stream")[len(before) :])
        return int(found.group(1)) if found else 0

    wait_for(preloaded, FIRST, what="the stream worker to read its table")
    assert preloaded() >= 6  # 3 listeners, an update, a tombstone, the bad record
    assert re.search(r"unreadable listener record ignored", pipeline.log("stream")[len(before) :])
    for name, address in (("c", "old"), ("d", "gone"), ("a", "kept"), ("b", "new")):
        Person.objects.create(name=name, address=f"{tok}-{address}")
    live_person_listener(receiver, f"/{tok}/added", f"{tok}-added")  # a change, live
    wait_for(lambda: names(receiver, f"/{tok}/kept") == ["a"], LATER, what="kept's delivery")
    wait_for(lambda: names(receiver, f"/{tok}/moved") == ["b"], LATER, what="the moved one's")
    Person.objects.create(name="e", address=f"{tok}-added")
    wait_for(lambda: names(receiver, f"/{tok}/added") == ["e"], LATER, what="the added one's")
    assert names(receiver, f"/{tok}/gone") == []
    assert names(receiver, f"/{tok}/moved") == ["b"]  # not "c", at the old address
    assert names(receiver, f"/{tok}/kept") == ["a"]
