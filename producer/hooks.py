"""Hooks: the events a Django site offers to listeners.

``Hook`` is a named event that code sends (``hook.send(**payload)``);
``SignalHook`` sends when a Django signal fires; ``ModelHook`` sends when a
model signal (``post_save`` by default; ``post_delete`` too) fires for its
model, with the fields named in ``provides_args`` (default: every concrete
field) and nothing else of the row::

    class PersonHook(ModelHook):
        name = "person"
        model = Person
        provides_args = ["name", "address"]

    hooks.register(PersonHook)

An event is published only when the surrounding transaction commits; a
rolled-back transaction sends nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
from django.db import models, router
from django.db.models import signals as model_signals
from django.db.models.fields.files import FieldFile
from django.dispatch import Signal

from durian.exceptions import ImproperlyConfigured
from durian.records import Event, new_id
from producer.backends import backend_for
from producer.listeners import ListenerBuilder

__all__ = ["Hook", "ModelHook", "SignalHook", "json_safe"]

logger = logging.getLogger(__name__)


def _enc_hook(value: Any) -> Any:
    if isinstance(value, FieldFile):
        return value.name or None
    if isinstance(value, models.Model):
        return value.pk
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(f"durian cannot put a {type(value).__name__} into a webhook payload")


def json_safe(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload with JSON types only: dates as ISO 8601, decimals and UUIDs as
    strings, files as their name, model instances as their primary key."""
    data: dict[str, Any] = msgspec.to_builtins(dict(payload), enc_hook=_enc_hook)
    return data


class Hook:
    """A named event. Subclass and set ``name`` (and ``provides_args``), or pass them."""

    name: ClassVar[str] = ""
    provides_args: ClassVar[Sequence[str] | None] = None
    description: ClassVar[str] = ""
    #: Deliver inside this process after commit, without Kafka (the seed's ``async = False``);
    #: ``None`` follows the ``inline`` setting.
    inline: ClassVar[bool | None] = None

    def __init__(self, name: str | None = None, provides_args: Sequence[str] | None = None) -> None:
        self.name = name or type(self).name  # type: ignore[misc]
        if provides_args is not None:
            self.provides_args = list(provides_args)  # type: ignore[misc]
        if not self.name:
            raise ImproperlyConfigured([f"{type(self).__name__} has no name; set `name = ...`"])

    # -- sending -------------------------------------------------------------

    def prepare_payload(self, sender: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Override point: the data sent to listeners. Default: ``provides_args`` fields."""
        if self.provides_args is None:
            return dict(payload)
        return {key: payload[key] for key in self.provides_args if key in payload}

    def send(
        self, sender: Any = None, *, object_id: Any = None, using: str | None = None, **payload: Any
    ) -> Event:
        """Send this event with the current transaction (on ``using``): into the outbox
        within it (the default), or published once it commits (``outbox`` off).

        An event over ``max_event_bytes`` raises ``EventTooLarge`` here, before the
        commit: inside ``transaction.atomic()`` (or with ``ATOMIC_REQUESTS``) the change
        that fired it is rolled back with it."""
        event = Event(
            id=new_id("evt"),
            hook=self.name,
            occurred_at=datetime.now(UTC),
            data=json_safe(self.prepare_payload(sender, payload)),
            object_id=None if object_id is None else str(object_id),
        )
        backend_for(self).send(event, using=using)
        return event

    # -- listeners -----------------------------------------------------------

    def listener(self, url: str, **options: Any) -> ListenerBuilder:
        """Start a listener for this hook (the seed's API)::

        PersonHook().listener(url="https://where.joe/is/listening").match(name="Joe").save()
        """
        return ListenerBuilder(self, url, **options)

    def fields(self) -> list[str]:
        """The names of the fields this hook sends (for forms and documentation)."""
        return list(self.provides_args or [])

    def connect(self) -> None:
        """Connect to whatever makes this hook fire (nothing, for a plain ``Hook``)."""

    def disconnect(self) -> None:
        """Undo ``connect()``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class SignalHook(Hook):
    """Fires when ``signal`` does; the payload is the signal's keyword arguments."""

    signal: ClassVar[Signal | Sequence[Signal] | None] = None

    def __init__(
        self,
        name: str | None = None,
        provides_args: Sequence[str] | None = None,
        signal: Signal | Sequence[Signal] | None = None,
    ) -> None:
        super().__init__(name, provides_args)
        if signal is not None:
            self.signal = signal  # type: ignore[misc]
        if self.signal is None:
            raise ImproperlyConfigured([f"{type(self).__name__} {self.name!r} has no signal"])

    @property
    def signals(self) -> list[Signal]:
        sig = self.signal
        return list(sig) if isinstance(sig, list | tuple) else [sig]  # type: ignore[list-item]

    def _sender(self) -> Any:
        return None

    def connect(self) -> None:
        for signal in self.signals:
            signal.connect(
                self.receive, sender=self._sender(), weak=False, dispatch_uid=self._uid(signal)
            )

    def disconnect(self) -> None:
        for signal in self.signals:
            signal.disconnect(sender=self._sender(), dispatch_uid=self._uid(signal))

    def _uid(self, signal: Signal) -> str:
        return f"durian.hook.{self.name}.{id(signal)}"

    def receive(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        self.send(sender, **kwargs)


class ModelHook(SignalHook):
    """Fires on a model signal (default ``post_save``) for ``model``."""

    model: ClassVar[type[models.Model] | None] = None
    signal = model_signals.post_save

    def __init__(
        self,
        name: str | None = None,
        provides_args: Sequence[str] | None = None,
        signal: Signal | Sequence[Signal] | None = None,
        model: type[models.Model] | None = None,
    ) -> None:
        if model is not None:
            self.model = model  # type: ignore[misc]
        if self.model is None:
            raise ImproperlyConfigured([f"{type(self).__name__} has no model"])
        super().__init__(
            name or type(self).name or self.model._meta.model_name, provides_args, signal
        )

    def _sender(self) -> Any:
        return self.model

    def fields(self) -> list[str]:
        if self.provides_args is not None:
            return list(self.provides_args)
        assert self.model is not None
        return [f.name for f in self.model._meta.concrete_fields]

    def prepare_payload(self, sender: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The ``provides_args`` fields of the instance (foreign keys as their key)."""
        instance = payload["instance"]
        assert self.model is not None
        out: dict[str, Any] = {}
        for name in self.fields():
            field = self.model._meta.get_field(name)
            attname = getattr(field, "attname", name)
            out[name] = getattr(instance, attname)
        return out

    def receive(self, sender: Any, **kwargs: Any) -> None:
        instance = kwargs["instance"]
        if kwargs.get("raw"):  # loaddata: fixtures are not events
            return
        self.send(
            sender,
            object_id=instance.pk,
            using=kwargs.get("using") or router.db_for_write(type(instance)),
            instance=instance,
        )
