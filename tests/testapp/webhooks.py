"""The test app's hooks, found by autodiscovery of `webhooks` modules."""

from __future__ import annotations

from django.db.models import signals

from producer.hooks import Hook, ModelHook
from producer.registry import hooks
from tests.testapp.models import Person


class PersonHook(ModelHook):
    name = "person"
    model = Person
    provides_args = ["name", "address", "born", "balance", "token", "avatar", "friend", "updated"]


class PersonDeletedHook(ModelHook):
    name = "person.deleted"
    model = Person
    signal = signals.post_delete
    provides_args = ["name"]


class InvoicePaidHook(Hook):
    name = "invoice.paid"
    provides_args = ["number", "amount"]


hooks.register(PersonHook)
hooks.register(PersonDeletedHook)
hooks.register(InvoicePaidHook)
