from __future__ import annotations

from django.apps import AppConfig


class DurianConfig(AppConfig):
    """durian's Django app. ``ready()`` registers checks and loads each app's ``webhooks``."""

    name = "producer"
    label = "durian"
    verbose_name = "durian webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from producer import checks

        checks.register()
        autodiscover_modules("webhooks")
