"""Listeners from Django: the seed's ``Hook().listener(url=...).match(...).save()``.

Saving writes a listener record to the compacted listeners topic (the one
source of truth); deleting writes a tombstone. Nothing is stored in the
Django database.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from durian.addresses import AddressPolicy
from durian.exceptions import InvalidListener
from durian.listener_store import ListenerStore
from durian.listeners import new_listener
from durian.match import compile_spec, spec_to_json
from durian.records import ListenerSpec
from producer.conf import get_settings

if TYPE_CHECKING:
    from producer.hooks import Hook

__all__ = ["Listener", "delete_listener", "listener_store"]

_store: ListenerStore | None = None
_store_pid = 0
_lock = threading.Lock()


def listener_store() -> ListenerStore:
    """This process's listener store for the current settings (new after a fork or a
    settings change; its producer is created on first write)."""
    global _store, _store_pid
    settings = get_settings()
    with _lock:
        if _store is None or _store_pid != os.getpid() or _store.settings is not settings:
            if _store is not None and _store_pid == os.getpid():
                _store.close()
            _store, _store_pid = ListenerStore(settings), os.getpid()
        return _store


class Listener:
    """A listener being built: ``.match(**conditions)`` then ``.save()``."""

    def __init__(
        self,
        hook: Hook,
        url: str,
        *,
        description: str = "",
        headers: dict[str, str] | None = None,
        rate_limit: float | None = None,
        active: bool = True,
        id: str | None = None,
    ) -> None:
        self.hook = hook
        self.url = url
        self.description = description
        self.headers = dict(headers or {})
        self.rate_limit = rate_limit
        self.active = active
        self.id = id
        self.conditions: dict[str, Any] = {}

    def match(self, **conditions: Any) -> Listener:
        """Add conditions: ``name="Joe"``, ``name=Startswith("J")``, ``address={"city": ...}``."""
        self.conditions.update(conditions)
        return self

    def build(self) -> ListenerSpec:
        """The listener record (validated: bad URLs, matchers and patterns raise here)."""
        return new_listener(
            hook=self.hook.name,
            url=self.url,
            match=spec_to_json(compile_spec(self.conditions)),
            active=self.active,
            description=self.description,
            headers=self.headers,
            rate_limit=self.rate_limit,
            id=self.id,
        )

    def save(self) -> ListenerSpec:
        """Write the listener to the listeners topic; returns it, secret included.

        Raises ``InvalidListener`` for a URL whose host is an IP address deliveries
        may not reach (private, loopback, ...; see ``DURIAN_ADDRESS_ALLOWLIST``)."""
        spec = self.build()
        refusal = AddressPolicy.from_settings(get_settings()).url_refusal(spec.url)
        if refusal is not None:
            raise InvalidListener(refusal)
        if self.hook.is_inline():
            from producer import inline

            inline.put(spec)
        else:
            listener_store().put(spec)
        return spec


def delete_listener(listener_id: str) -> None:
    """Write the tombstone that deletes a listener (or forget it, in inline mode)."""
    from producer import inline

    if listener_id in inline.listeners:
        inline.delete(listener_id)
    else:
        listener_store().delete(listener_id)
