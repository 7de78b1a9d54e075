"""One delivery attempt against a real HTTP receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import standardwebhooks

from durian import conf
from durian.addresses import is_public
from durian.http.dispatch import AttemptResult, Dispatcher
from durian.records import DeliveryJob, Event, ListenerOptions, ListenerSpec, job_id
from durian.signing import generate_secret
from tests.receiver import Answer, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def settings(**overrides: object) -> conf.Settings:
    base: dict[str, object] = {"ALLOW_PRIVATE_ADDRESSES": True, "DELIVERY_TIMEOUT": 2}
    return conf.load(environ={}, overrides={**base, **overrides})


Job = tuple[DeliveryJob, ListenerSpec]


def job(url: str, **options: object) -> Job:
    """A job and its listener, as a worker holds them."""
    listener = ListenerSpec(
        id="lst_1", hook="person", url=url, secret=generate_secret(),
        options=ListenerOptions(**options),  # type: ignore[arg-type]
    )  # fmt: skip
    event = Event(id="evt_1", hook="person", occurred_at=datetime.now(UTC), data={"name": "Joe"})
    made = DeliveryJob(id=job_id(event.id, listener.id), event=event, listener_id=listener.id)
    return made, listener


def attempt(the_job: Job, **overrides: object) -> AttemptResult:
    async def go() -> AttemptResult:
        dispatcher = Dispatcher(settings(**overrides))
        try:
            return await dispatcher.attempt(*the_job)
        finally:
            await dispatcher.aclose()

    return asyncio.run(go())


def test_a_2xx_is_delivered_signed_with_the_job_id(receiver: Receiver) -> None:
    the_job, listener = job(receiver.url("/ok"), headers={"x-team": "a"})
    result = attempt((the_job, listener))
    assert result.ok and result.status_code == 200 and result.latency_ms > 0
    (request,) = receiver.to("/ok")
    assert request.headers["Webhook-Id"] == the_job.id
    assert request.headers["X-Team"] == "a"
    payload = standardwebhooks.Webhook(listener.secret).verify(request.body, request.headers)
    assert payload["type"] == "person" and payload["data"] == {"name": "Joe"}
    assert payload["timestamp"] == the_job.event.occurred_at.isoformat()


@pytest.mark.parametrize("status", [500, 503, 429, 408, 404, 400, 302])
def test_every_other_answer_is_retried_by_default(receiver: Receiver, status: int) -> None:
    receiver.answer = lambda _request: Answer(status, body="no")
    result = attempt(job(receiver.url("/fail")))
    assert not result.ok and result.status_code == status and result.retryable
    assert result.response_excerpt == "no" and not result.gone
    assert (result.error or "").startswith(f"answered HTTP {status}")


def test_statuses_set_as_non_retryable_go_to_the_dead_letters(receiver: Receiver) -> None:
    receiver.answer = lambda _request: Answer(404, body="no")
    result = attempt(job(receiver.url("/gone")), NON_RETRYABLE_STATUSES="400,404,422")
    assert not result.ok and not result.retryable


def test_410_gone_asks_to_disable_the_listener(receiver: Receiver) -> None:
    receiver.answer = lambda _request: Answer(410, body="")
    result = attempt(job(receiver.url("/unsubscribed")))
    assert result.gone and not result.retryable and "410 Gone" in (result.error or "")


@pytest.mark.parametrize(("status", "honoured"), [(429, True), (503, True), (500, False)])
def test_retry_after_is_read_where_it_means_something(
    receiver: Receiver, status: int, honoured: bool
) -> None:
    receiver.answer = lambda _request: Answer(status, headers=(("Retry-After", "120"),))
    assert attempt(job(receiver.url("/busy"))).retry_after == (120 if honoured else None)


def test_redirects_are_failures_and_never_followed(receiver: Receiver) -> None:
    receiver.answer = lambda request: (
        Answer(302, headers=(("Location", "/elsewhere"),)) if request.path == "/moved" else Answer()
    )
    result = attempt(job(receiver.url("/moved")))
    assert not result.ok and result.status_code == 302
    assert "redirect" in (result.error or "")
    assert receiver.to("/elsewhere") == []


def test_a_slow_receiver_times_out_as_a_transient_failure(receiver: Receiver) -> None:
    receiver.answer = lambda _request: Answer(delay=1.5, body="late")
    result = attempt(job(receiver.url("/slow"), timeout=0.5))
    assert not result.ok and result.retryable and "timed out" in (result.error or "")


def test_an_oversize_error_response_is_a_permanent_failure(receiver: Receiver) -> None:
    receiver.answer = lambda _request: Answer(500, body="x" * 5000)
    result = attempt(job(receiver.url("/big")), MAX_RESPONSE_BYTES=1000)
    assert not result.ok and not result.retryable
    assert "larger than 1000 bytes" in (result.error or "")


def test_a_2xx_with_an_oversize_body_is_delivered_and_its_excerpt_cut(receiver: Receiver) -> None:
    # A dead letter here would be replayed and delivered twice.
    receiver.answer = lambda _request: Answer(body="y" * 50_000)
    result = attempt(job(receiver.url("/big-ok")), MAX_RESPONSE_BYTES=1000)
    assert result.ok and result.status_code == 200
    assert 0 < len(result.response_excerpt) <= 1024 and set(result.response_excerpt) == {"y"}


def test_a_refused_connection_is_transient() -> None:
    from durian.embedded import free_port

    result = attempt(job(f"http://127.0.0.1:{free_port()}/"))
    assert not result.ok and result.retryable and "connection failed" in (result.error or "")


def test_private_addresses_are_refused_unless_allowed(receiver: Receiver) -> None:
    result = attempt(job(receiver.url("/internal")), ALLOW_PRIVATE_ADDRESSES=False)
    assert not result.ok and not result.retryable and not result.contacted
    assert "127.0.0.1 is a non-public address" in (result.error or "")
    assert receiver.to("/internal") == []


def test_a_name_is_checked_by_the_resolver_that_connects(receiver: Receiver) -> None:
    # "localhost" is not an IP literal: aiohttp resolves it through the guarded
    # resolver, and connects only to the addresses that resolver checked.
    url = receiver.url("/by-name").replace("127.0.0.1", "localhost")
    result = attempt(job(url), ALLOW_PRIVATE_ADDRESSES=False)
    assert not result.ok and not result.retryable and not result.contacted
    assert "'localhost' resolves to a non-public address" in (result.error or "")
    assert receiver.to("/by-name") == []


def test_the_allowlist_opens_only_the_networks_it_names(receiver: Receiver) -> None:
    url = receiver.url("/allowed").replace("127.0.0.1", "localhost")
    opened = attempt(
        job(url), ALLOW_PRIVATE_ADDRESSES=False, ADDRESS_ALLOWLIST="127.0.0.0/8,::1/128"
    )
    assert opened.ok
    closed = attempt(job(url), ALLOW_PRIVATE_ADDRESSES=False, ADDRESS_ALLOWLIST="10.0.0.0/8")
    assert not closed.ok and not closed.contacted


def test_the_total_timeout_bounds_a_trickling_answer(receiver: Receiver) -> None:
    # Each read is quick; the whole answer is not.
    receiver.answer = lambda _request: Answer(body="." * 20, trickle=0.1)
    started = time.monotonic()
    result = attempt(job(receiver.url("/trickle"), timeout=0.5), READ_TIMEOUT=1)
    assert not result.ok and result.retryable
    assert "no complete answer within 0.5 s" in (result.error or "")
    assert time.monotonic() - started < 1.9


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
