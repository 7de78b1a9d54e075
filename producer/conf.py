"""durian's settings at Django's edge: ``settings.DURIAN`` over the environment."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from durian import conf


@functools.cache
def get_settings() -> conf.Settings:
    """The durian settings of this Django process (cached; reset when DURIAN changes)."""
    overrides: dict[str, Any] = dict(getattr(django_settings, "DURIAN", {}) or {})
    return conf.load(overrides=overrides)


@receiver(setting_changed)
def _reset(setting: str, **kwargs: Any) -> None:
    if setting == "DURIAN":
        get_settings.cache_clear()
