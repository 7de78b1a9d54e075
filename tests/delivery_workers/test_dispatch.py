"""One delivery attempt against a real HTTP receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import standardwebhooks
from pytest_httpserver import HTTPServer
from werkzeug import Response

from delivery_workers.dispatch import AttemptResult, Dispatcher
from delivery_workers.offsets import OffsetTracker
from durian import conf
from durian.addresses import is_public
from durian.records import DeliveryJob, Event, ListenerOptions, ListenerSpec, job_id
from durian.signing import generate_secret
from tests.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(HTTPServer(host="127.0.0.1", port=0)).start()
    yield server
    server.stop()


def settings(**overrides: object) -> conf.Settings:
    base: dict[str, object] = {"ALLOW_PRIVATE_ADDRESSES": True, "DELIVERY_TIMEOUT": 2}
    return conf.load(environ={}, overrides={**base, **overrides})


def job(url: str, **options: object) -> DeliveryJob:
    listener = ListenerSpec(
        id="lst_1", hook="person", url=url, secret=generate_secret(),
        options=ListenerOptions(**options),  # type: ignore[arg-type]
    )  # fmt: skip
    event = Event(id="evt_1", hook="person", occurred_at=datetime.now(UTC), data={"name": "Joe"})
    return DeliveryJob(id=job_id(event.id, listener.id), event=event, listener=listener)


def attempt(the_job: DeliveryJob, **overrides: object) -> AttemptResult:
    async def go() -> AttemptResult:
        dispatcher = Dispatcher(settings(**overrides))
        try:
            return await dispatcher.attempt(the_job)
        finally:
            await dispatcher.aclose()

    return asyncio.run(go())


def test_a_2xx_is_delivered_signed_with_the_job_id(receiver: Receiver) -> None:
    the_job = job(receiver.url("/ok"), headers={"x-team": "a"})
    result = attempt(the_job)
    assert result.ok and result.status_code == 200 and result.latency_ms > 0
    (request,) = receiver.to("/ok")
    assert request.headers["Webhook-Id"] == the_job.id
    assert request.headers["X-Team"] == "a"
    payload = standardwebhooks.Webhook(the_job.listener.secret).verify(
        request.body, request.headers
    )
    assert payload["type"] == "person" and payload["data"] == {"name": "Joe"}
    assert payload["timestamp"] == the_job.event.occurred_at.isoformat()


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (404, False), (410, False), (400, False)],
)
def test_failures_say_whether_a_retry_can_help(
    receiver: Receiver, status: int, retryable: bool
) -> None:
    receiver.answer = lambda _req: Response("no", status=status)
    result = attempt(job(receiver.url("/fail")))
    assert not result.ok and result.status_code == status
    assert result.retryable is retryable
    assert result.error == f"answered HTTP {status}" and result.response_excerpt == "no"


def test_retry_after_is_read(receiver: Receiver) -> None:
    receiver.answer = lambda _req: Response("", status=503, headers={"Retry-After": "120"})
    assert attempt(job(receiver.url("/busy"))).retry_after == 120


def test_redirects_are_failures_and_never_followed(receiver: Receiver) -> None:
    receiver.answer = lambda req: (
        Response("", status=302, headers={"Location": "/elsewhere"})
        if req.path == "/moved"
        else Response("ok")
    )
    result = attempt(job(receiver.url("/moved")))
    assert not result.ok and result.status_code == 302
    assert "redirect" in (result.error or "")
    assert receiver.to("/elsewhere") == []


def test_a_slow_receiver_times_out_as_a_transient_failure(receiver: Receiver) -> None:
    def slow(_req: object) -> Response:
        time.sleep(1.5)
        return Response("late")

    receiver.answer = slow
    result = attempt(job(receiver.url("/slow"), timeout=0.5))
    assert not result.ok and result.retryable and "timed out" in (result.error or "")


def test_an_oversize_response_is_a_permanent_failure(receiver: Receiver) -> None:
    receiver.answer = lambda _req: Response("x" * 5000)
    result = attempt(job(receiver.url("/big")), MAX_RESPONSE_BYTES=1000)
    assert not result.ok and not result.retryable
    assert "larger than 1000 bytes" in (result.error or "")


def test_a_refused_connection_is_transient() -> None:
    from durian.embedded import free_port

    result = attempt(job(f"http://127.0.0.1:{free_port()}/"))
    assert not result.ok and result.retryable and "connection failed" in (result.error or "")


def test_private_addresses_are_refused_unless_allowed(receiver: Receiver) -> None:
    result = attempt(job(receiver.url("/internal")), ALLOW_PRIVATE_ADDRESSES=False)
    assert not result.ok and not result.retryable
    assert "non-public address (127.0.0.1)" in (result.error or "")
    assert receiver.to("/internal") == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False),
        ("192.168.1.1", False), ("169.254.169.254", False), ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True), ("2001:4860:4860::8888", True), ("100.64.0.1", False),
    ],
)  # fmt: skip
def test_address_classification(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_offsets_commit_only_below_the_lowest_job_in_flight() -> None:
    tracker = OffsetTracker()
    tp = ("durian.deliveries", 0)
    for offset in range(5):
        tracker.add(tp, offset)
    tracker.done(tp, 1)
    tracker.done(tp, 2)
    assert tracker.committable() == {tp: 0}
    tracker.done(tp, 0)
    assert tracker.committable() == {tp: 3}
    tracker.mark_committed({tp: 3})
    assert tracker.committable() == {}
    tracker.done(tp, 4)
    tracker.done(tp, 3)
    assert tracker.committable() == {tp: 5}
    tracker.forget([tp])
    assert tracker.committable() == {} and tracker.in_flight() == 0
