"""Django admin: the delivery log, read-only (listeners are managed in durian's views,
since they live on Kafka rather than in the database)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from producer.models import DeliveryAttempt


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("at", "listener_id", "hook", "job_id", "attempt", "outcome", "status_code")
    list_filter = ("outcome", "hook")
    search_fields = ("listener_id", "job_id", "event_id")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
