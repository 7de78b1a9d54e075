from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durian.exceptions import DecodeError, InvalidListener, InvalidMatcher
from durian.records import (
    Attempt,
    DeliveryJob,
    Event,
    ListenerOptions,
    ListenerSpec,
    RetiredSecret,
    decode,
    encode,
    event_key,
    job_id,
    new_id,
)
from durian.signing import generate_secret

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def listener(**changes: object) -> ListenerSpec:
    fields: dict[str, object] = {
        "id": "lst_1",
        "hook": "person",
        "url": "https://example.com/hook",
        "secret": generate_secret(),
        "match": {"name": {"$startswith": "J"}},
    }
    fields.update(changes)
    return ListenerSpec(**fields)  # type: ignore[arg-type]


def event() -> Event:
    return Event(id="evt_1", hook="person", occurred_at=NOW, data={"name": "Joe"}, object_id="7")


def test_every_record_round_trips_with_its_versioned_tag() -> None:
    job = DeliveryJob(id=job_id("evt_1", "lst_1"), event=event(), listener_id="lst_1")
    attempt = Attempt(
        job_id=job.id, listener_id="lst_1", event_id="evt_1", hook="person", attempt=1,
        at=NOW, outcome="delivered", status_code=200, latency_ms=3.2,
    )  # fmt: skip
    for record, tag in [
        (event(), "durian.event.v1"),
        (listener(), "durian.listener.v1"),
        (job, "durian.delivery.v2"),
        (attempt, "durian.attempt.v1"),
    ]:
        data = encode(record)
        assert msgspec.json.decode(data)["type"] == tag
        assert decode(data) == record
        assert decode(data, type(record)) == record


def test_decode_names_the_missing_field_and_the_location() -> None:
    data = b'{"type": "durian.event.v1", "id": "e", "hook": "h", "data": {}}'
    with pytest.raises(DecodeError) as info:
        decode(data, topic="durian.events", partition=3, offset=42)
    assert "occurred_at" in str(info.value)
    assert info.value.location == "durian.events[3]@42"
    assert str(info.value).endswith("(at durian.events[3]@42)")


def test_decode_names_a_field_of_the_wrong_type() -> None:
    data = encode(event()).replace(b'"hook":"person"', b'"hook":5')
    with pytest.raises(DecodeError, match=r"\$\.hook"):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", b'{"type": "durian.event.v9"}', b"[]", b""],
)
def test_garbage_is_a_decode_error_not_a_crash(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_with_a_type_refuses_other_record_types() -> None:
    with pytest.raises(DecodeError, match=r"durian\.event\.v1"):
        decode(encode(event()), ListenerSpec)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "ftp://example.com"}, "http:// or https://"),
        ({"url": "https://"}, "no host name"),
        ({"url": "https://user:pw@example.com/"}, "user name or password"),
        ({"url": "https://example.com:99999/"}, "cannot be parsed"),
        ({"url": ""}, "empty"),
        ({"url": "https://exa mple.com/"}, "white space"),
        ({"id": "has space"}, "listener id"),
        ({"hook": ""}, "hook name"),
        ({"secret": "plain"}, "whsec_"),
    ],
)
def test_invalid_listeners_are_refused_with_what_to_fix(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidListener, match=message):
        listener(**changes)


def test_invalid_match_spec_is_refused_when_the_listener_is_built() -> None:
    with pytest.raises(InvalidMatcher, match="not a valid RE2"):
        listener(match={"name": {"$like": "(a)\\1"}})


def test_invalid_listener_on_the_topic_decodes_to_a_decode_error() -> None:
    data = encode(listener()).replace(b"https://example.com/hook", b"gopher://x")
    with pytest.raises(DecodeError, match="http:// or https://"):
        decode(data, ListenerSpec, topic="durian.listeners", partition=0, offset=1)


def test_signing_secrets_include_retired_ones_until_they_expire() -> None:
    old = generate_secret()
    spec = listener(old_secrets=(RetiredSecret(secret=old, expires_at=NOW + timedelta(hours=1)),))
    assert spec.signing_secrets(NOW) == [spec.secret, old]
    assert spec.signing_secrets(NOW + timedelta(hours=2)) == [spec.secret]


def test_repr_never_shows_secrets() -> None:
    old = generate_secret()
    spec = listener(old_secrets=(RetiredSecret(secret=old, expires_at=NOW),))
    assert spec.secret not in repr(spec)
    assert old not in repr(spec.old_secrets)


def test_job_ids_are_stable_per_event_and_listener() -> None:
    assert job_id("evt_1", "lst_1") == job_id("evt_1", "lst_1")
    assert job_id("evt_1", "lst_1") != job_id("evt_1", "lst_2")
    assert job_id("evt_1", "lst_1").startswith("msg_")


@given(st.text(), st.text())
def test_job_ids_are_the_uuid5_of_event_and_listener(event_id: str, listener_id: str) -> None:
    """The id a job had before jobs were hashed without the UUID object: a job made again
    by an upgraded worker keeps its id, and receivers' deduplication still holds."""
    namespace = uuid.UUID("5a3c5e1e-7d4b-4f0e-9a57-4d7572696164")
    expected = uuid.uuid5(namespace, f"{event_id}/{listener_id}").hex
    assert job_id(event_id, listener_id) == f"msg_{expected}"


def test_new_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id("evt") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert [i[:16] for i in ids] == sorted(i[:16] for i in ids)


def test_event_key_orders_per_object() -> None:
    assert event_key("person", 7) == b"person:7"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Webhook-Id": "forged"}, "set by durian itself"),
        ({"webhook-signature": "v1,x"}, "set by durian itself"),
        ({"Content-Type": "text/plain"}, "set by durian itself"),
        ({"Host": "internal"}, "set by durian itself"),
        ({"X-Token": "a\r\nX-Injected: 1"}, "line break"),
        ({"bad name": "x"}, "not a valid HTTP header name"),
    ],
)
def test_listener_headers_that_would_forge_or_break_a_request_are_refused(
    headers: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidListener, match=message):
        ListenerSpec(
            id="lst_h", hook="person", url="https://e.com", secret=generate_secret(),
            options=ListenerOptions(headers=headers),
        )  # fmt: skip


def test_ordinary_listener_headers_are_taken() -> None:
    spec = ListenerSpec(
        id="lst_h", hook="person", url="https://e.com", secret=generate_secret(),
        options=ListenerOptions(headers={"Authorization": "Bearer x", "X-Team": "a"}),
    )  # fmt: skip
    assert spec.options.headers["Authorization"] == "Bearer x"


def test_a_record_nested_past_any_reason_is_a_decode_error_with_its_location() -> None:
    data = b'{"a":' * 5000 + b"1" + b"}" * 5000
    record = (
        b'{"type":"durian.event.v1","id":"evt_1","hook":"h",'
        b'"occurred_at":"2026-01-01T00:00:00Z","data":' + data + b"}"
    )
    with pytest.raises(DecodeError, match=r"nested too deeply.*t\[0\]@7"):
        decode(record, Event, topic="t", partition=0, offset=7)
    listener = (
        b'{"type":"durian.listener.v1","id":"lst_1","hook":"h","url":"https://e.com/",'
        b'"secret":"'
        + generate_secret().encode()
        + b'","match":'
        + b'{"a":' * 100
        + b'{"$startswith":"J"}'
        + b"}" * 100
        + b"}"
    )
    with pytest.raises(DecodeError, match="nests at most"):
        decode(listener, ListenerSpec, topic="t", partition=0, offset=8)
