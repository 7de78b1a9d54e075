"""Settings: one frozen struct, one loader, every problem reported at once.

Sources, later ones win::

    code defaults  ->  TOML file named by DURIAN_CONFIG_FILE  ->  DURIAN_<FIELD> environment
                   ->  overrides (Django passes settings.DURIAN, e.g. {"BOOTSTRAP_SERVERS": ...})

Roles call :func:`load` once, at start-up, and pass the ``Settings`` down.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from durian.exceptions import ImproperlyConfigured

__all__ = ["Problem", "Settings", "check", "env_name", "load"]

logger = logging.getLogger(__name__)

_Positive = Annotated[int, msgspec.Meta(ge=1)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]
_SECRET_WORDS = ("password", "secret", "token", "key")


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything durian's roles read. Env name ``DURIAN_<FIELD>``, Django key ``<FIELD>``."""

    topic_prefix: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,100}$")] = "durian"
    """First part of every topic and consumer-group name (``durian.events``)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma-separated ``host:port``."""

    embedded: bool = False
    """The broker is the embedded tansu broker: apply the embedded-broker client
    settings from ``durian.kafka`` (short session timeout, one record per batch
    where end offsets are read). Never set it against a real Kafka cluster."""

    kafka_options: dict[str, str] = {}
    """Extra librdkafka settings for every client (``security.protocol``, ``sasl.*``)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis shared by the delivery workers (deduplication, endpoint health)."""

    events_partitions: _Positive = 8
    """Partitions of the events topic."""

    listeners_partitions: _Positive = 1
    """Partitions of the compacted listeners topic (one keeps table recovery simple)."""

    deliveries_partitions: _Positive = 8
    """Partitions of the deliveries topic and of each retry tier."""

    attempts_partitions: _Positive = 4
    """Partitions of the attempts topic (the delivery log)."""

    replication_factor: _Positive = 1
    """Replication factor of new topics; use 3 on a production cluster."""

    retry_schedule: tuple[_Seconds, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    """Seconds to wait before each retry (Standard Webhooks / Svix default)."""

    retry_jitter: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.2
    """Each retry delay is spread by +/- this fraction."""

    connect_timeout: _Seconds = 5.0
    """Seconds to open a connection to a subscriber."""

    delivery_timeout: _Seconds = 15.0
    """Seconds one delivery attempt may take in all."""

    read_timeout: _Seconds = 10.0
    """Seconds to wait for each read of a subscriber's response."""

    max_response_bytes: _Positive = 65536
    """Largest response body read from a subscriber; more fails the attempt."""

    max_event_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 900_000
    """Largest event a site may send, encoded. A bigger one is refused by ``Hook.send``
    (``EventTooLarge``) before the transaction commits. Each job carries its event, and
    Kafka refuses records over ``message.max.bytes`` (1 MB by default): raise both
    together."""

    max_retry_after: _Seconds = 3600.0
    """Longest ``Retry-After`` honoured (429, 502, 503, 504); longer asks are cut to it."""

    non_retryable_statuses: tuple[Annotated[int, msgspec.Meta(ge=400, le=499)], ...] = ()
    """4xx statuses that end a delivery at once (dead letter, no retry). Every other
    failure is retried; 410 always disables the listener."""

    allow_private_addresses: bool = False
    """Allow deliveries to loopback and private networks (development only)."""

    address_allowlist: tuple[str, ...] = ()
    """Networks (CIDR, e.g. ``10.1.2.0/24``) deliveries may reach although they are not
    public: a narrower opening than ``allow_private_addresses``."""

    dedup_ttl: _Seconds = 7 * 86400.0
    """Seconds a delivered job's id is remembered in Redis, so a replayed job is not sent twice."""

    endpoint_concurrency: _Positive = 8
    """Requests in flight to one listener at most, per delivery worker: a slow endpoint
    cannot take every slot. A worker holds 16 times this many of one listener's jobs
    at most; more wait on a retry tier, not in memory."""

    breaker_threshold: _Positive = 5
    """Consecutive failed attempts that open an endpoint's circuit breaker."""

    breaker_cooldown: _Seconds = 30.0
    """Seconds an open breaker waits before one probe; doubles after each failed probe."""

    breaker_max_cooldown: _Seconds = 900.0
    """Longest wait between probes of an open breaker."""

    disable_after: _Seconds = 5 * 86400.0
    """A listener whose endpoint has failed without a success for this long is disabled."""

    max_poll_interval_ms: Annotated[int, msgspec.Meta(ge=10_000)] = 300_000
    """Kafka's max.poll.interval.ms for the delivery consumers."""

    outbox: bool = True
    """Events go through the site's database: each is written to the ``durian_outbox``
    table in the transaction that fired it, and ``manage.py durian_relay`` publishes it
    and deletes the row once Kafka has acknowledged it. Nothing is lost when the broker
    is away or the web process dies. ``False`` publishes straight from the web process
    after the commit: one hop less, but an event is lost if the process dies before the
    broker acknowledges it or the broker stays away longer than the client's
    ``message.timeout.ms`` (docs/delivery.md, "At the producer")."""

    inline: bool = False
    """Match and deliver inside the Django process after commit, without Kafka: the
    seed's ``async = False``, for development and a site's own tests."""

    session_timeout_ms: Annotated[int, msgspec.Meta(ge=1000)] | None = None
    """Consumer session timeout; unset means the broker profile's default."""

    gap_patience: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Seconds a reader waits for a skipped offset to appear before it reads on past it
    (``durian.gap``). Unset means 10 on the embedded broker, which can hand a reader a
    record before an earlier one is stored, and 0 (off) elsewhere: Apache Kafka's gaps
    (compaction, transaction markers) never fill."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in redacted(self).items())
        return f"Settings({fields})"


@dataclass(frozen=True)
class Problem:
    """One result of :func:`check`; ``producer.checks`` turns these into Django checks."""

    level: Literal["error", "warning"]
    id: str
    msg: str
    hint: str = ""


def env_name(field: str) -> str:
    return f"DURIAN_{field.upper()}"


def load(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build ``Settings`` from all sources; raise ``ImproperlyConfigured`` listing every problem."""
    env = os.environ if environ is None else environ
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    raw: dict[str, tuple[str, Any]] = {}  # field -> (where it came from, raw value)
    problems: list[str] = []

    config_file = env.get("DURIAN_CONFIG_FILE")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                table = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"DURIAN_CONFIG_FILE={config_file!r} cannot be read: {exc}")
        else:
            table = table.get("durian", table)
            for key, value in table.items():
                _take(raw, problems, fields, key.lower(), f"{config_file}: {key}", value)

    for name in fields:
        if env_name(name) in env:
            raw[name] = (env_name(name), _from_env(env[env_name(name)], fields[name].type))
    _warn_unknown(env, fields)

    for key, value in (overrides or {}).items():
        _take(raw, problems, fields, str(key).lower(), f"DURIAN[{key!r}]", value)

    values: dict[str, Any] = {}
    for name, (where, value) in raw.items():
        try:
            values[name] = msgspec.convert(value, fields[name].type, strict=False)
        except msgspec.ValidationError as exc:
            problems.append(f"{where}={_show(name, value)} is invalid: {_reason(exc)}")
    # The rules across fields are checked too, on the values that are valid, so that
    # every problem is reported at once.
    settings = Settings(**values)
    problems += [f"{p.msg} {p.hint}".strip() for p in check(settings) if p.level == "error"]
    if problems:
        raise ImproperlyConfigured(problems)
    return settings


#: Environment names that start with DURIAN_ and are not settings.
_NOT_SETTINGS = ("DURIAN_CONFIG_FILE", "DURIAN_TEST_")


def _warn_unknown(env: Mapping[str, str], fields: Mapping[str, Any]) -> None:
    """A misspelled ``DURIAN_*`` variable would be ignored in silence: say so."""
    known = [env_name(name) for name in fields]
    for name in env:
        if not name.startswith("DURIAN_") or name in known or name.startswith(_NOT_SETTINGS):
            continue
        close = difflib.get_close_matches(name[7:].lower(), list(fields), n=1, cutoff=0.7)
        hint = f"; did you mean {env_name(close[0])}?" if close else ""
        logger.warning("%s is not a durian setting and is ignored%s", name, hint)


def check(settings: Settings) -> list[Problem]:
    """Rules that span fields. Errors stop ``load``; warnings are for logs and Django checks."""
    found: list[Problem] = []
    servers = [s.strip() for s in settings.bootstrap_servers.split(",") if s.strip()]
    if not servers:
        found.append(
            Problem(
                "error",
                "durian.E001",
                "DURIAN_BOOTSTRAP_SERVERS is empty.",
                "Set it, or DURIAN = {'BOOTSTRAP_SERVERS': 'host:9092'} in Django settings.",
            )
        )
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            found.append(
                Problem(
                    "error",
                    "durian.E002",
                    f"bootstrap server {server!r} is not host:port.",
                    "Write it as e.g. 'kafka-1:9092'.",
                )
            )
    if urllib.parse.urlsplit(settings.redis_url).scheme not in {"redis", "rediss", "unix"}:
        found.append(
            Problem(
                "error",
                "durian.E003",
                "DURIAN_REDIS_URL must be a redis://, rediss:// or unix:// URL.",
                "For example redis://127.0.0.1:6379/0.",
            )
        )
    if not settings.retry_schedule:
        found.append(
            Problem(
                "warning",
                "durian.W001",
                "DURIAN_RETRY_SCHEDULE is empty: "
                "a failed delivery goes to the dead letters at once.",
            )
        )
    if settings.delivery_timeout * 1000 > settings.max_poll_interval_ms / 2:
        found.append(
            Problem(
                "warning",
                "durian.W002",
                "DURIAN_DELIVERY_TIMEOUT is more than half of DURIAN_MAX_POLL_INTERVAL_MS.",
                "A slow subscriber could make the delivery consumer leave its group; "
                "lower the timeout or raise the poll interval.",
            )
        )
    for network in settings.address_allowlist:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            found.append(
                Problem(
                    "error",
                    "durian.E004",
                    f"DURIAN_ADDRESS_ALLOWLIST entry {network!r} is not a network.",
                    "Write networks in CIDR form, e.g. 10.1.2.0/24 or fd00::/8.",
                )
            )
    if settings.breaker_max_cooldown < settings.breaker_cooldown:
        found.append(
            Problem(
                "error",
                "durian.E005",
                "DURIAN_BREAKER_MAX_COOLDOWN is shorter than DURIAN_BREAKER_COOLDOWN.",
                "Raise the maximum or lower the cooldown.",
            )
        )
    if settings.connect_timeout > settings.delivery_timeout:
        found.append(
            Problem(
                "warning",
                "durian.W003",
                "DURIAN_CONNECT_TIMEOUT is longer than DURIAN_DELIVERY_TIMEOUT and never applies.",
            )
        )
    if settings.embedded and (settings.session_timeout_ms or 0) > 10_000:
        found.append(
            Problem(
                "warning",
                "durian.W004",
                "DURIAN_SESSION_TIMEOUT_MS is long for the embedded broker.",
                "tansu holds a group join for about half the session timeout; 6000 joins in ~3 s.",
            )
        )
    if settings.allow_private_addresses and not settings.embedded:
        found.append(
            Problem(
                "warning",
                "durian.W005",
                "DURIAN_ALLOW_PRIVATE_ADDRESSES is on: deliveries may reach internal services.",
                "Keep it for development only.",
            )
        )
    return found


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a dict, fit for logs: passwords and tokens replaced by ``**********``."""
    out = msgspec.structs.asdict(settings)
    out["kafka_options"] = {
        key: "**********" if any(word in key.lower() for word in _SECRET_WORDS) else value
        for key, value in settings.kafka_options.items()
    }
    parts = urllib.parse.urlsplit(settings.redis_url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":**********@")
        out["redis_url"] = parts._replace(netloc=netloc).geturl()
    return out


def _take(
    raw: dict[str, tuple[str, Any]],
    problems: list[str],
    fields: Mapping[str, Any],
    name: str,
    where: str,
    value: Any,
) -> None:
    if name not in fields:
        known = ", ".join(sorted(n.upper() for n in fields))
        problems.append(f"{where} is not a durian setting (known: {known})")
    else:
        text_value = _from_env(value, fields[name].type) if isinstance(value, str) else value
        raw[name] = (where, text_value)


def _from_env(text: str, annotation: Any) -> Any:
    """Environment values are strings: JSON for structures, commas for tuples."""
    origin = getattr(annotation, "__origin__", annotation)
    if origin in (tuple, dict, list):
        stripped = text.strip()
        if stripped.startswith(("[", "{")):
            try:
                return msgspec.json.decode(stripped)
            except msgspec.DecodeError:
                return text
        if origin is tuple:
            return [part.strip() for part in stripped.split(",") if part.strip()]
    return text


def _show(name: str, value: Any) -> str:
    if name == "kafka_options" or name == "redis_url":
        return "<redacted>"
    return repr(value)


def _reason(exc: msgspec.ValidationError) -> str:
    return str(exc).replace(" - at `$`", "")
