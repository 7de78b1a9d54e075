"""Listener operations, written once: create, change, rotate the secret.

The CLI (``durian listeners``), the web interface and the seed's
``Hook().listener(...).save()`` all build listener records here, so the same
input makes the same listener wherever it is typed. Each function returns a
validated ``ListenerSpec`` (an invalid URL, id, matcher or header raises
``InvalidListener`` saying what to fix); writing it is the store's job
(``durian.listener_store``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from durian.records import ListenerOptions, ListenerSpec, RetiredSecret, decode, encode, new_id
from durian.signing import generate_secret

__all__ = ["ROTATION_GRACE", "changed", "new_listener", "rotated"]

#: How long a replaced secret keeps signing (as a second signature) after a rotation.
ROTATION_GRACE = timedelta(hours=24)


def new_listener(
    *,
    hook: str,
    url: str,
    match: dict[str, Any] | None = None,
    active: bool = True,
    description: str = "",
    headers: dict[str, str] | None = None,
    rate_limit: float | None = None,
    id: str | None = None,
) -> ListenerSpec:
    """A new listener with a fresh signing secret; ``match`` is a JSON match spec
    (``durian.match.spec_to_json``)."""
    now = datetime.now(UTC)
    return ListenerSpec(
        id=id or new_id("lst"),
        hook=hook,
        url=url,
        secret=generate_secret(),
        match=match or {},
        active=active,
        description=description,
        options=ListenerOptions(headers=dict(headers or {}), rate_limit=rate_limit),
        created_at=now,
        updated_at=now,
    )


def changed(listener: ListenerSpec, **changes: Any) -> ListenerSpec:
    """The listener with ``changes``, a new version (``updated_at``), validated like a new
    one (``msgspec.structs.replace`` alone skips validation)."""
    new = msgspec.structs.replace(listener, updated_at=datetime.now(UTC), **changes)
    return decode(encode(new), ListenerSpec)


def rotated(listener: ListenerSpec, grace: timedelta = ROTATION_GRACE) -> ListenerSpec:
    """The listener with a new secret; the current one keeps signing for ``grace``, so
    a receiver can switch without missing a delivery. Secrets retired earlier that
    have expired are dropped."""
    now = datetime.now(UTC)
    still = tuple(old for old in listener.old_secrets if old.expires_at > now)
    retired = RetiredSecret(secret=listener.secret, expires_at=now + grace)
    return changed(listener, secret=generate_secret(), old_secrets=(*still, retired))
