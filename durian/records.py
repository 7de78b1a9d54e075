"""The records on durian's topics: versioned JSON, decoded into typed structs.

Every record carries its type and version in the ``type`` field
(``"durian.event.v1"``), so ``kcat`` shows what it is and a future ``EventV2``
can live beside ``Event``. Decoding checks every field; a record that does not
fit raises ``DecodeError`` naming the field (and, when read from Kafka, the
topic, partition and offset).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, overload

import msgspec

from durian.addresses import host_problem
from durian.exceptions import DecodeError, InvalidListener, RecordError
from durian.match import spec_from_json

__all__ = [
    "LISTENER_DISABLED",
    "Attempt",
    "Consumed",
    "DeliveryJob",
    "Event",
    "HookSpec",
    "ListenerOptions",
    "ListenerSpec",
    "Record",
    "RetiredSecret",
    "decode",
    "decode_message",
    "encode",
    "event_key",
    "job_id",
    "job_key",
    "listener_key",
    "listener_of",
    "new_id",
    "validate_url",
]

#: The hook of the event a delivery worker sends when it disables a listener (410 Gone,
#: or failures for ``disable_after``). Listen to it like any hook.
LISTENER_DISABLED = "durian.listener.disabled"

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_JOB_NAMESPACE = uuid.UUID("5a3c5e1e-7d4b-4f0e-9a57-4d7572696164")
_JOB_NAMESPACE_BYTES = _JOB_NAMESPACE.bytes
_URL_MAX = 2048
#: While listeners load in bulk (``remembering_compiled``), the match specs compiled when
#: each was validated, by the identity of their JSON form: a stream worker decodes each
#: listener read and indexes it a moment later.
_COMPILED: OrderedDict[int, tuple[dict[str, Any], dict[str, Any]]] = OrderedDict()
_COMPILED_MAX = 16_384
_loads = 0


@contextlib.contextmanager
def remembering_compiled() -> Iterator[None]:
    """Keep the match specs compiled while listeners are decoded, for ``compiled_match``.

    Only during a load: a kept spec outlives its decode, and many such survivors make
    Python's cycle collector walk the whole heap more often (measured: decoding a
    listener cost 35 µs instead of 21 with the collector running).
    """
    global _loads
    _loads += 1
    try:
        yield
    finally:
        _loads -= 1
        if not _loads:
            _COMPILED.clear()


def _remember(match: dict[str, Any], compiled: dict[str, Any]) -> None:
    if not _loads:
        return
    _COMPILED[id(match)] = (match, compiled)  # holding ``match`` keeps its id unique
    if len(_COMPILED) > _COMPILED_MAX:
        with contextlib.suppress(KeyError):  # another thread emptied it first
            _COMPILED.popitem(last=False)


#: White space, as ``str.isspace`` has it.
_SPACE = re.compile(r"\s")


def new_id(prefix: str) -> str:
    """A time-ordered unique id: ``evt_0193a5c4e2f1b7d8a0c4e1f2a3b4``."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


def job_id(event_id: str, listener_id: str) -> str:
    """The stable id of the delivery of one event to one listener (the ``webhook-id``):
    ``uuid5(_JOB_NAMESPACE, "<event id>/<listener id>")`` in hex, computed without
    building the UUID object (a third of the cost, once per job in the stream worker)."""
    digest = bytearray(
        hashlib.sha1(_JOB_NAMESPACE_BYTES + f"{event_id}/{listener_id}".encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return f"msg_{digest.hex()}"


def event_key(hook: str, pk: object) -> bytes:
    """Key of an event: all changes to one object land on one partition, in order."""
    return f"{hook}:{pk}".encode()


def listener_key(listener_id: str) -> bytes:
    """Key of a listener record, and of the attempts made for it."""
    return listener_id.encode()


def job_key(listener_id: str, event: Event) -> bytes:
    """Key of a delivery job: ``<listener id>/<object>``.

    One listener's jobs spread over every partition of the deliveries topic, so
    every delivery worker can work for a busy listener; the changes of one object
    land on one partition and reach each listener in the order they happened (as
    long as none needs a retry: a retried job waits on its tier while later ones go).
    """
    return f"{listener_id}/{event.object_id or event.id}".encode()


def listener_of(key: bytes | None) -> str:
    """The listener id a delivery job's key names (``job_key``; a bare id, too)."""
    return (key or b"").split(b"/", 1)[0].decode(errors="replace")


def validate_url(url: str) -> str:
    """Refuse what can never be delivered to; return the URL unchanged.

    The host must be written as HTTP clients will read it (``host_problem``).
    Whether its address may be reached is decided when the listener is written,
    for an IP literal (``AddressPolicy.url_refusal``), and at every connection.
    """
    if not isinstance(url, str) or not url:
        raise InvalidListener("the listener URL is empty")
    if len(url) > _URL_MAX:
        raise InvalidListener(f"the listener URL is longer than {_URL_MAX} characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidListener(f"the listener URL {url!r} cannot be parsed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidListener(f"the listener URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise InvalidListener(f"the listener URL {url!r} has no host name")
    if parts.username or parts.password:
        raise InvalidListener(
            "the listener URL must not carry a user name or password; "
            "put credentials in the listener's headers instead"
        )
    if port == 0:
        raise InvalidListener(f"the listener URL {url!r} has port 0")
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise InvalidListener(f"the listener URL {url!r} is refused: {problem}")
    if _SPACE.search(url):
        raise InvalidListener(f"the listener URL {url!r} contains white space")
    return url


#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
#: Header names a listener may not set: durian's own (signature, body) and the
#: connection's, which a value could otherwise forge or break.
_RESERVED_HEADERS = ("webhook-", "content-", "host", "connection", "transfer-encoding")


def header_problem(name: str, value: str) -> str | None:
    """What is wrong with a listener header, or ``None``."""
    if not _HEADER_NAME.match(name):
        return f"header name {name!r} is not a valid HTTP header name"
    lowered = name.lower()
    if any(lowered == r or (r.endswith("-") and lowered.startswith(r)) for r in _RESERVED_HEADERS):
        return (
            f"header {name!r} is set by durian itself (webhook-*, content-*, host, connection, "
            "transfer-encoding); choose another name"
        )
    if len(value) > 8192 or any(ch in value for ch in "\r\n\0"):
        return f"the value of header {name!r} contains a line break or NUL, or is too long"
    return None


def _check_id(kind: str, value: str) -> None:
    if not _ID.match(value):
        raise InvalidListener(
            f"{kind} {value!r} must be 1-128 characters of letters, digits and _ . : -"
        )


class Record(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every record type."""


class Event(Record, tag="durian.event.v1", frozen=True):
    """Something happened: a hook fired with its payload."""

    id: str
    hook: str
    occurred_at: datetime
    data: dict[str, Any]
    object_id: str | None = None


class RetiredSecret(msgspec.Struct, frozen=True, kw_only=True):
    """A previous signing secret that still signs until ``expires_at`` (rotation grace)."""

    secret: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"RetiredSecret(secret='**********', expires_at={self.expires_at!r})"


class ListenerOptions(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Per-listener delivery options."""

    headers: dict[str, str] = {}
    rate_limit: float | None = None
    """Deliveries per second at most; unset means no limit."""
    timeout: float | None = None
    """Seconds per attempt; unset means ``Settings.delivery_timeout``."""


class ListenerSpec(Record, tag="durian.listener.v1", frozen=True):
    """A subscriber: where to POST which events of one hook."""

    id: str
    hook: str
    url: str
    secret: str
    match: dict[str, Any] = {}
    active: bool = True
    description: str = ""
    old_secrets: tuple[RetiredSecret, ...] = ()
    options: ListenerOptions = ListenerOptions()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_id("listener id", self.id)
        _check_id("hook name", self.hook)
        validate_url(self.url)
        if not self.secret.startswith("whsec_"):
            raise InvalidListener("the listener secret must be a whsec_ secret")
        _remember(self.match, spec_from_json(self.match))  # raises InvalidMatcher naming the field
        for name, value in self.options.headers.items():
            problem = header_problem(name, value)
            if problem is not None:
                raise InvalidListener(problem)
        rate = self.options.rate_limit
        if rate is not None and rate <= 0:
            raise InvalidListener("options.rate_limit must be a positive number per second")
        if self.options.timeout is not None and self.options.timeout <= 0:
            raise InvalidListener("options.timeout must be a positive number of seconds")

    def compiled_match(self) -> dict[str, Any]:
        """``match`` as matchers (``durian.match.spec_from_json``); during a load, the form
        built when this listener was validated (``remembering_compiled``)."""
        found = _COMPILED.get(id(self.match))
        if found is not None and found[0] is self.match:
            return found[1]
        return spec_from_json(self.match)

    @property
    def version(self) -> float:
        """When it was last changed (Unix time; 0 when never stamped)."""
        return self.updated_at.timestamp() if self.updated_at else 0.0

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a request now: the current one and those in their grace."""
        moment = now or datetime.now(UTC)
        return [self.secret] + [old.secret for old in self.old_secrets if old.expires_at > moment]

    def __repr__(self) -> str:
        return (
            f"ListenerSpec(id={self.id!r}, hook={self.hook!r}, url={self.url!r}, "
            f"match={self.match!r}, active={self.active!r}, secret='**********')"
        )


class DeliveryJob(Record, tag="durian.delivery.v2", frozen=True):
    """One event to deliver to one listener; the same ``id`` on every attempt.

    The job names its listener and carries none of it (no URL, no secret, no header):
    a worker delivers with the listener as it is when the attempt is made, from its
    own copy of the listeners topic."""

    id: str
    event: Event
    listener_id: str
    listener_version: float = 0.0
    """The ``version`` of the listener that matched the event: a worker whose copy of
    the table is older reads on until it has it (or learns the listener is gone)."""
    attempt: int = 1
    not_before: float | None = None
    """Unix time before which this job must not be attempted (retry tiers)."""
    last_error: str | None = None
    throttled: bool = False
    """The job holds a rate-limit slot at ``not_before``: it goes then without asking again."""

    @classmethod
    def of(cls, event: Event, listener: ListenerSpec) -> DeliveryJob:
        """The first attempt's job for an event a listener matched."""
        return cls(
            id=job_id(event.id, listener.id),
            event=event,
            listener_id=listener.id,
            listener_version=listener.version,
        )


class Attempt(Record, tag="durian.attempt.v1", frozen=True):
    """What happened on one HTTP attempt: the delivery log."""

    job_id: str
    listener_id: str
    event_id: str
    hook: str
    attempt: int
    at: datetime
    outcome: Literal["delivered", "retrying", "dead", "dropped"]
    status_code: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    response_excerpt: str = ""


class HookSpec(Record, tag="durian.hook.v1", frozen=True):
    """A hook a site declares, on the hooks topic (keyed by name): what the CLI checks a
    new listener's hook against, and what ``durian hooks list`` shows."""

    name: str
    fields: tuple[str, ...] = ()
    """The fields its events carry (empty: not declared, any)."""
    description: str = ""
    declared_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_id("hook name", self.name)


AnyRecord: TypeAlias = Event | ListenerSpec | DeliveryJob | Attempt | HookSpec
R = TypeVar("R", bound=Record)

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def encode(record: Record) -> bytes:
    """The JSON bytes of a record, ``type`` tag first."""
    return _encoder.encode(record)


@overload
def decode(
    data: bytes,
    type: type[R],
    *,
    topic: str | None = ...,
    partition: int | None = ...,
    offset: int | None = ...,
) -> R: ...
@overload
def decode(
    data: bytes,
    type: None = ...,
    *,
    topic: str | None = ...,
    partition: int | None = ...,
    offset: int | None = ...,
) -> AnyRecord: ...
def decode(
    data: bytes,
    type: Any = None,
    *,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> Any:
    """Decode one record; ``type`` restricts it to one record class.

    Raises ``DecodeError`` with what is wrong (``Object missing required field
    `url` - at `$```) and where it was read.
    """
    target = AnyRecord if type is None else type
    decoder = _decoders.get(target)
    if decoder is None:
        decoder = _decoders[target] = msgspec.json.Decoder(target)
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, RecordError) as exc:
        raise DecodeError(str(exc), topic=topic, partition=partition, offset=offset) from None
    except RecursionError:  # msgspec raises it, not a DecodeError, for very deep JSON
        raise DecodeError(
            "nested too deeply to decode", topic=topic, partition=partition, offset=offset
        ) from None


class Consumed(Protocol):
    """A record as a Kafka client hands it out (confluent-kafka's ``Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def value(self) -> bytes | None: ...


def decode_message(msg: Consumed, type: type[R]) -> R:
    """Decode a consumed record; a ``DecodeError`` names its topic, partition and offset."""
    return decode(
        msg.value() or b"", type, topic=msg.topic(), partition=msg.partition(), offset=msg.offset()
    )
