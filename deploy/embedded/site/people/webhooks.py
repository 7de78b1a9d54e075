"""The seed's PersonHook: every saved Person is an event with its name and address."""

from django.db.models import signals

from people.models import Person
from producer.hooks import ModelHook
from producer.registry import hooks


class PersonHook(ModelHook):
    name = "person"
    model = Person
    signal = signals.post_save
    provides_args = ["name", "address"]


hooks.register(PersonHook)
