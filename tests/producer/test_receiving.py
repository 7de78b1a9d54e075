"""The receiving side: ``listens`` verifies, parses and deduplicates incoming webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import standardwebhooks
from django.test import Client

from durian.signing import signature_headers
from tests.testapp import views


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    from django.core.cache import cache

    cache.clear()
    views.received.clear()
    views.statuses.clear()
    yield


def post(body: bytes, headers: dict[str, str], client: Client | None = None):  # type: ignore[no-untyped-def]
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return (client or Client(enforce_csrf_checks=True)).post(
        "/hooks/person/", data=body, content_type="application/json", **extra
    )


BODY = json.dumps(
    {"type": "person", "timestamp": "2026-11-25T10:00:00+00:00", "data": {"name": "Joe"}}
).encode()


def test_a_signed_webhook_reaches_the_view_parsed() -> None:
    response = post(BODY, signature_headers("msg_1", BODY, [views.SECRET]))
    assert response.status_code == 200, response.content
    (webhook,) = views.received
    assert (webhook.id, webhook.type, webhook.data) == ("msg_1", "person", {"name": "Joe"})
    assert webhook.timestamp is not None and webhook.timestamp.year == 2026


def test_what_the_public_signer_sends_is_accepted() -> None:
    signer = standardwebhooks.Webhook(views.SECRET)
    now = datetime.now(UTC).replace(microsecond=0)
    signature = signer.sign("msg_std", now, BODY.decode())
    headers = {
        "webhook-id": "msg_std",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    assert post(BODY, headers).status_code == 200


def test_the_previous_secret_still_verifies_during_a_rotation() -> None:
    assert post(BODY, signature_headers("msg_2", BODY, [views.OLD_SECRET])).status_code == 200


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda h: {**h, "webhook-signature": "v1,AAAA"}, "no signature matches"),
        (lambda h: {k: v for k, v in h.items() if k != "webhook-id"}, "missing header"),
        (lambda h: {**h, "webhook-timestamp": str(int(time.time()) - 3600)}, "away from now"),
    ],
)
def test_a_bad_signature_is_401_and_says_why(mangle, reason: str) -> None:  # type: ignore[no-untyped-def]
    headers = mangle(signature_headers("msg_3", BODY, [views.SECRET]))
    response = post(BODY, headers)
    assert response.status_code == 401 and reason in response.json()["error"]
    assert views.SECRET not in response.content.decode() and views.received == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_signed_body_that_is_not_a_json_object_is_400(body: bytes) -> None:
    response = post(body, signature_headers("msg_4", body, [views.SECRET]))
    assert response.status_code == 400 and "JSON" in response.json()["error"]
    assert views.received == []


def test_a_repeated_webhook_id_reaches_the_view_once() -> None:
    first = post(BODY, signature_headers("msg_5", BODY, [views.SECRET]))
    again = post(BODY, signature_headers("msg_5", BODY, [views.SECRET]))
    assert first.status_code == again.status_code == 200
    assert again.json() == {"duplicate": "msg_5"} and len(views.received) == 1


def test_only_post_is_accepted() -> None:
    response = Client().get("/hooks/person/")
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_a_webhook_the_view_did_not_accept_is_processed_on_the_retry() -> None:
    views.statuses.extend([503, 500])
    headers = signature_headers("msg_6", BODY, [views.SECRET])
    assert post(BODY, headers).status_code == 503
    assert post(BODY, headers).status_code == 500
    assert post(BODY, headers).status_code == 200
    assert post(BODY, headers).json() == {"duplicate": "msg_6"}
    assert len(views.received) == 3


def test_the_same_id_in_the_view_elsewhere_is_asked_to_come_back() -> None:
    from django.core.cache import cache

    cache.add("durian:webhook:msg_7", "taken")  # another request is in the view
    response = post(BODY, signature_headers("msg_7", BODY, [views.SECRET]))
    assert response.status_code == 409 and response["Retry-After"] == "5"
    assert views.received == []


def test_a_secret_function_that_gives_no_secret_is_401_not_500() -> None:
    body_headers = signature_headers("msg_8", BODY, [views.SECRET])
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in body_headers.items()}
    response = Client().post("/hooks/nobody/", data=BODY, content_type="application/json", **extra)
    assert response.status_code == 401 and "no secret" in response.json()["error"]
    assert views.received == []
