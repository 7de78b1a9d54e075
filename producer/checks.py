"""Django system checks for durian: ``durian.E0xx`` errors, ``durian.W0xx`` warnings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks
from django.core.exceptions import FieldDoesNotExist

from durian import conf
from durian.exceptions import ImproperlyConfigured
from producer.conf import get_settings
from producer.hooks import ModelHook
from producer.registry import hooks


def register() -> None:
    checks.register(check_settings, "durian")
    checks.register(check_hooks, "durian")


def check_settings(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    try:
        settings = get_settings()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(problem, hint="See docs/configuration.md.", id="durian.E000")
            for problem in exc.problems
        ]
    messages: list[checks.CheckMessage] = []
    for problem in conf.check(settings):
        kind = checks.Error if problem.level == "error" else checks.Warning
        messages.append(kind(problem.msg, hint=problem.hint or None, id=problem.id))
    return messages


def check_hooks(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for first, second in hooks.conflicts:
        messages.append(
            checks.Error(
                f"two hooks are named {first.name!r}: {type(first).__qualname__} and "
                f"{type(second).__qualname__}.",
                hint="Hook names are event types; give each hook its own name.",
                obj=type(second),
                id="durian.E011",
            )
        )
    for hook in hooks:
        if not isinstance(hook, ModelHook) or hook.provides_args is None:
            continue
        assert hook.model is not None
        for name in hook.provides_args:
            try:
                hook.model._meta.get_field(name)
            except FieldDoesNotExist:
                known = ", ".join(f.name for f in hook.model._meta.concrete_fields)
                messages.append(
                    checks.Error(
                        f"{type(hook).__qualname__}.provides_args names {name!r}, which is not "
                        f"a field of {hook.model._meta.label}.",
                        hint=f"Fields of {hook.model._meta.label}: {known}.",
                        obj=type(hook),
                        id="durian.E010",
                    )
                )
    return messages
