"""Inline mode (the seed's ``async = False``): match and deliver inside the Django process.

For development and for a site's own tests: no broker, no workers. Listeners
saved in inline mode live in this process's table; after a transaction
commits, each event is matched with the same matchers and POSTed, signed the
same way, synchronously, with the same timeouts, no redirects and the same
address guard. There are no retries: each attempt is kept in ``attempts``
for tests to inspect, and a failure is logged.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

import httpx
import msgspec

from durian import conf
from durian.addresses import AddressPolicy
from durian.match import deepmatch, spec_from_json
from durian.records import Event, ListenerSpec, job_id
from durian.signing import signature_headers

__all__ = ["InlineAttempt", "attempts", "clear", "deliver", "listeners"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InlineAttempt:
    job_id: str
    listener_id: str
    url: str
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


listeners: dict[str, ListenerSpec] = {}
attempts: list[InlineAttempt] = []
_lock = threading.Lock()


def put(listener: ListenerSpec) -> None:
    with _lock:
        listeners[listener.id] = listener


def delete(listener_id: str) -> None:
    with _lock:
        listeners.pop(listener_id, None)


def clear() -> None:
    """Forget every inline listener and attempt (call it between tests)."""
    with _lock:
        listeners.clear()
        attempts.clear()


def deliver(event: Event, settings: conf.Settings) -> list[InlineAttempt]:
    """POST ``event`` to every matching active inline listener, one after another."""
    with _lock:
        matching = [
            listener
            for listener in listeners.values()
            if listener.active
            and listener.hook == event.hook
            and deepmatch(spec_from_json(listener.match), event.data)
        ]
    body = msgspec.json.encode(
        {"type": event.hook, "timestamp": event.occurred_at.isoformat(), "data": event.data}
    )
    done = []
    timeout = httpx.Timeout(settings.delivery_timeout, connect=settings.connect_timeout)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for listener in sorted(matching, key=lambda item: item.id):
            done.append(_post(client, settings, event, listener, body))
    with _lock:
        attempts.extend(done)
    return done


def _post(
    client: httpx.Client, settings: conf.Settings, event: Event, listener: ListenerSpec, body: bytes
) -> InlineAttempt:
    msg_id = job_id(event.id, listener.id)
    status: int | None = None
    error: str | None = None
    try:
        _guard(listener.url, settings)
        headers = {
            **listener.options.headers,
            "content-type": "application/json",
            **signature_headers(
                msg_id, body, listener.signing_secrets(), timestamp=int(time.time())
            ),
        }
        response = client.post(listener.url, content=body, headers=headers)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"answered HTTP {status}"
    except (httpx.HTTPError, OSError, ValueError) as exc:
        error = str(exc) or type(exc).__name__
    if error:
        logger.error("inline delivery of %s to %s failed: %s", msg_id, listener.id, error)
    return InlineAttempt(msg_id, listener.id, listener.url, status, error)


def _guard(url: str, settings: conf.Settings) -> None:
    policy = AddressPolicy.from_settings(settings)
    if policy.allow_all:
        return
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port)})
    reason = policy.blocked_reason(host, addresses)
    if reason is not None:
        raise ValueError(reason)
