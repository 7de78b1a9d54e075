"""The seed's API: Hook().listener(url=...).match(...).save() writes to the listeners topic."""

from __future__ import annotations

import pytest

from durian import conf
from durian.exceptions import InvalidListener, InvalidMatcher
from durian.listener_store import ListenerStore
from durian.match import Startswith
from producer.listeners import delete_listener
from tests.testapp.webhooks import PersonHook


def test_seed_examples_work_as_written(durian_site: conf.Settings) -> None:
    joe = PersonHook().listener(url="http://where.joe/is/listening").match(name="Joe").save()
    j = (
        PersonHook()
        .listener(url="http://where.joe/is/listening")
        .match(name=Startswith("J"))
        .save()
    )
    anyone = PersonHook().listener(url="http://where.joe/is/listening").save()
    table = ListenerStore(durian_site).read().listeners
    assert table[joe.id].match == {"name": {"$is": "Joe"}}
    assert table[j.id].match == {"name": {"$startswith": "J"}}
    assert table[anyone.id].match == {}
    assert {table[i].hook for i in (joe.id, j.id, anyone.id)} == {"person"}
    assert table[joe.id].secret == joe.secret and joe.secret.startswith("whsec_")


def test_delete_writes_a_tombstone(durian_site: conf.Settings) -> None:
    spec = PersonHook().listener(url="https://e.com").save()
    delete_listener(spec.id)
    assert spec.id not in ListenerStore(durian_site).read().listeners


def test_invalid_listeners_are_refused_before_anything_is_written(
    durian_site: conf.Settings,
) -> None:
    with pytest.raises(InvalidListener, match="http:// or https://"):
        PersonHook().listener(url="javascript:alert(1)").save()
    with pytest.raises(InvalidMatcher, match="not a valid RE2"):
        from durian.match import Like

        PersonHook().listener(url="https://e.com").match(name=Like("(?<=x)")).save()
    with pytest.raises(InvalidListener, match=r"169\.254\.169\.254 is a non-public address"):
        PersonHook().listener(url="http://169.254.169.254/latest/meta-data").save()
    with pytest.raises(InvalidListener, match="non-ASCII dot"):
        PersonHook().listener(url="http://10\uff0e0\uff0e0\uff0e1/").save()
    assert ListenerStore(durian_site).read().records == 0
