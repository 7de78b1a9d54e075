"""Inline mode: matched and delivered in-process after commit, no broker at all."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import standardwebhooks
from django.db import transaction
from django.test import override_settings

from durian.match import Startswith
from producer import inline
from producer.listeners import delete_listener
from tests.receiver import Answer, Received, Receiver
from tests.testapp.models import Person
from tests.testapp.webhooks import PersonHook

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    inline.clear()
    # No broker is configured: a Kafka call would fail, so these tests prove none is made.
    with override_settings(DURIAN={"INLINE": True, "ALLOW_PRIVATE_ADDRESSES": True,
                                   "BOOTSTRAP_SERVERS": "127.0.0.1:1"}):  # fmt: skip
        yield server
    inline.clear()
    server.stop()


def test_matching_saves_are_delivered_signed_after_commit(receiver: Receiver) -> None:
    listener = PersonHook().listener(url=receiver.url("/j")).match(name=Startswith("J")).save()
    with transaction.atomic():
        Person.objects.create(name="Joe")
        Person.objects.create(name="Ann")
        assert receiver.requests == []  # nothing before the commit
    (request,) = receiver.to("/j")
    payload = standardwebhooks.Webhook(listener.secret).verify(request.body, request.headers)
    assert payload["data"]["name"] == "Joe" and "secret" not in payload["data"]
    assert [a.ok for a in inline.attempts] == [True]


def test_rolled_back_and_deleted_listeners_send_nothing(receiver: Receiver) -> None:
    listener = PersonHook().listener(url=receiver.url("/all")).save()
    with pytest.raises(RuntimeError), transaction.atomic():
        Person.objects.create(name="Ghost")
        raise RuntimeError("roll back")
    delete_listener(listener.id)
    Person.objects.create(name="After")
    assert receiver.requests == []


def test_a_failing_endpoint_is_recorded_not_raised(receiver: Receiver) -> None:
    receiver.answer = lambda _request: Answer(503, body="down")
    PersonHook().listener(url=receiver.url("/down")).save()
    Person.objects.create(name="Joe")
    (attempt,) = inline.attempts
    assert not attempt.ok and attempt.error == "answered HTTP 503"


def test_the_address_guard_applies_inline_too(receiver: Receiver) -> None:
    PersonHook().listener(url=receiver.url("/internal")).save()
    with override_settings(DURIAN={"INLINE": True}):
        Person.objects.create(name="Joe")
    (attempt,) = inline.attempts
    assert "non-public address" in (attempt.error or "") and receiver.requests == []


def test_inline_sends_through_the_workers_transport_and_limits(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(request: Received) -> Answer:
        if request.path == "/huge":
            return Answer(500, body="x" * 3_000_000)  # an error page past the cap
        if request.path == "/trickle":
            return Answer(body="." * 30, trickle=0.1)  # each read is quick; the whole is not
        return Answer()

    receiver.answer = answer
    # A proxy from the environment would connect for us to addresses never checked.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    for path in ("/ok", "/huge", "/trickle"):
        PersonHook().listener(url=receiver.url(path)).match(name=path).save()
    limits = {"DELIVERY_TIMEOUT": 0.5, "MAX_RESPONSE_BYTES": 65536}
    with override_settings(DURIAN={"INLINE": True, "ALLOW_PRIVATE_ADDRESSES": True, **limits}):
        started = time.monotonic()
        for path in ("/ok", "/huge", "/trickle"):
            Person.objects.create(name=path)
        elapsed = time.monotonic() - started
    by_url = {a.url.rsplit("/", 1)[1]: a for a in inline.attempts}
    assert by_url["ok"].ok  # not through the proxy
    assert by_url["huge"].error == "the response is larger than 65536 bytes"
    assert "no complete answer within 0.5 s" in (by_url["trickle"].error or "")
    assert elapsed < 2.5  # the trickle took 3 s to answer: the total deadline held
