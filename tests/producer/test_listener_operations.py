"""One way to build a listener: the CLI, the web form and the seed API agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from durian.cli import parse_condition
from durian.exceptions import InvalidListener
from durian.listeners import changed, new_listener, rotated
from durian.match import Any as AnyMatcher
from durian.match import (
    Contains,
    Endswith,
    Is,
    Like,
    Matcher,
    Startswith,
    compile_spec,
    spec_to_json,
)
from durian.records import RetiredSecret
from producer.forms import ListenerForm
from producer.hooks import Hook

CONDITIONS = [
    ("is", "42"), ("is", "Joe"), ("is", '"42"'), ("is", "true"), ("is", "null"),
    ("is", "[1, 2]"), ("is", '{"a": 1}'), ("contains", "7"), ("contains", "oe"),
    ("startswith", "J"), ("endswith", "son"), ("like", "^J.*n$"), ("any", ""),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "value"), CONDITIONS)
def test_the_cli_the_form_and_the_seed_api_build_the_same_spec(kind: str, value: str) -> None:
    text = f"name={kind}:{value}" if value else f"name={kind}"
    from_cli = spec_to_json(compile_spec(dict([parse_condition(text)])))
    form = ListenerForm(
        {"url": "https://example.com/hook", "active": "on", "kind_name": kind, "value_name": value},
        fields=["name"],
    )
    assert form.is_valid(), form.errors
    assert form.spec == from_cli
    # The seed's builder takes the same matcher the CLI parsed.
    _, matcher = parse_condition(text)
    built = Hook(name="person").listener(url="https://example.com/hook").match(name=matcher)
    assert built.build().match == from_cli


def test_a_new_listener_has_its_own_secret_and_one_version() -> None:
    a = new_listener(hook="person", url="https://example.com/a")
    b = new_listener(hook="person", url="https://example.com/a", id="lst_chosen")
    assert a.secret.startswith("whsec_") and a.secret != b.secret
    assert a.id.startswith("lst_") and b.id == "lst_chosen"
    assert a.created_at == a.updated_at


def test_a_change_is_validated_and_is_a_new_version() -> None:
    listener = new_listener(hook="person", url="https://example.com/a")
    later = changed(listener, url="https://example.com/b")
    assert later.url == "https://example.com/b" and later.secret == listener.secret
    assert later.updated_at and listener.updated_at and later.updated_at >= listener.updated_at
    with pytest.raises(InvalidListener, match="URL"):
        changed(listener, url="ftp://example.com/")


def test_rotation_keeps_the_old_secret_for_the_grace_and_drops_expired_ones() -> None:
    now = datetime.now(UTC)
    expired = RetiredSecret(secret=new_listener(hook="h", url="https://e.com/").secret,
                            expires_at=now - timedelta(seconds=1))  # fmt: skip
    listener = changed(new_listener(hook="h", url="https://e.com/"), old_secrets=(expired,))
    new = rotated(listener, grace=timedelta(hours=2))
    assert new.secret != listener.secret
    (kept,) = new.old_secrets
    assert kept.secret == listener.secret
    assert abs(kept.expires_at - now - timedelta(hours=2)) < timedelta(seconds=5)


SPECS = [
    Is("123"), Is(123), Is(1.5), Is(True), Is(None), Is("true"), Is([1, 2]), Is("[1, 2]"),
    Is('"quoted"'), Is("Joe"), Contains(7), Contains("7"), Contains("oe"), Startswith("12"),
    Startswith('"'), Endswith("son"), Like("^J.*n$"), AnyMatcher(),
]  # fmt: skip


@pytest.mark.parametrize("matcher", SPECS, ids=repr)
def test_the_edit_form_gives_back_every_condition_the_cli_can_make(matcher: Matcher) -> None:
    stored = spec_to_json(compile_spec({"name": matcher}))
    initial = ListenerForm.initial_for(stored)
    form = ListenerForm({"url": "https://e.com/", "active": "on", **initial}, fields=["name"])
    assert form.is_valid(), form.errors
    assert form.spec == stored  # saved unchanged, the spec stays what it was


def test_the_edit_form_names_what_it_cannot_show() -> None:
    nested = spec_to_json(compile_spec({"address": {"city": "Oslo"}, "name": Startswith("J")}))
    assert "nested fields (address)" in (ListenerForm.cannot_edit(nested) or "")
    assert ListenerForm.cannot_edit(spec_to_json(compile_spec({"name": Is("x")}))) is None
