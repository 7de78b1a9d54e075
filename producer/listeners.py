"""Listeners from Django: the seed's ``Hook().listener(url=...).match(...).save()``.

Saving hands the listener to its hook's backend (``producer.backends``): a
record on the compacted listeners topic (the one source of truth), or this
process's table in inline mode. Nothing is stored in the Django database.
"""

from __future__ import annotations

from typing import Any, Protocol

from durian.addresses import AddressPolicy
from durian.exceptions import InvalidListener
from durian.listeners import new_listener
from durian.match import compile_spec, spec_to_json
from durian.records import ListenerSpec
from producer.backends import backend_for, delete_listener
from producer.conf import get_settings
from producer.registry import hooks

__all__ = ["ListenerBuilder", "delete_listener"]


class _Hook(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def inline(self) -> bool | None: ...


class ListenerBuilder:
    """A listener being built: ``.match(**conditions)`` then ``.save()``."""

    def __init__(
        self,
        hook: _Hook,
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

    def match(self, **conditions: Any) -> ListenerBuilder:
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
        """Save the listener with its hook's backend; returns it, secret included.

        Raises ``InvalidListener`` for a hook that is not registered (it could never
        fire), and for a URL whose host is an IP address deliveries may not reach
        (private, loopback, ...; see ``DURIAN_ADDRESS_ALLOWLIST``)."""
        if self.hook.name not in hooks:
            known = ", ".join(hook.name for hook in hooks) or "none"
            raise InvalidListener(
                f"hook {self.hook.name!r} is not registered (registered: {known}); "
                "register it (producer.registry.hooks.register) or fix the name"
            )
        spec = self.build()
        refusal = AddressPolicy.from_settings(get_settings()).url_refusal(spec.url)
        if refusal is not None:
            raise InvalidListener(refusal)
        backend_for(self.hook).save_listener(spec)
        return spec
