from __future__ import annotations

from django.core import checks
from django.test import override_settings

from producer.hooks import ModelHook
from producer.registry import hooks
from tests.testapp.models import Person


def run_checks() -> list[checks.CheckMessage]:
    return checks.run_checks(tags=["durian"])


def test_a_correct_site_passes() -> None:
    assert run_checks() == []


def test_unknown_provides_args_field_is_an_error_listing_the_real_fields() -> None:
    class Broken(ModelHook):
        name = "broken"
        model = Person
        provides_args = ["name", "nickname"]

    hooks.register(Broken)
    try:
        (error,) = run_checks()
    finally:
        hooks.unregister("broken")
    assert error.id == "durian.E010"
    assert "'nickname'" in error.msg and "address" in (error.hint or "")


def test_two_hooks_with_one_name_is_an_error() -> None:
    class Twin(ModelHook):
        name = "person"
        model = Person

    hooks.register(Twin)
    try:
        ids = [m.id for m in run_checks()]
    finally:
        hooks.conflicts.clear()
    assert ids == ["durian.E011"]


def test_settings_problems_become_checks() -> None:
    with override_settings(DURIAN={"BOOTSTRAP_SERVERS": "", "DELIVERY_TIMEOUT": 600}):
        ids = sorted(m.id for m in run_checks())
    assert ids == ["durian.E000"]
    with override_settings(DURIAN={"DELIVERY_TIMEOUT": 600}):
        assert [m.id for m in run_checks()] == ["durian.W002"]
