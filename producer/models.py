"""The Django side's own tables: the delivery log, and the permissions of the web UI.

Listeners are not here: they live on the compacted listeners topic (the one
source of truth). ``Listener`` is an unmanaged model without a table that only
carries the UI's permissions (``durian.view_listener``, ``add_``, ``change_``,
``delete_`` and ``durian.replay_deadletter``), so they can be granted like any
other Django permission.

The delivery log is PostgreSQL (the site's database): it is read per listener,
newest first, and pruned by age, which one index on (listener, time) serves;
it needs no service the site does not run already. ``manage.py durian_log``
fills it from the attempts topic and applies the retention.
"""

from __future__ import annotations

from django.db import models


class Listener(models.Model):
    """Permissions of the listener views (no table: listeners live on Kafka)."""

    class Meta:
        managed = False
        default_permissions = ("view", "add", "change", "delete")
        permissions = [("replay_deadletter", "Can replay dead letters")]


class DeliveryAttempt(models.Model):
    """One HTTP attempt of one job, as recorded on the attempts topic."""

    job_id = models.CharField(max_length=64)
    listener_id = models.CharField(max_length=128)
    event_id = models.CharField(max_length=64)
    hook = models.CharField(max_length=128)
    attempt = models.PositiveIntegerField()
    at = models.DateTimeField()
    outcome = models.CharField(max_length=16)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(default=0)
    error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")
    # Where it was read: the same record read twice (after a restart) is stored once.
    source = models.CharField(max_length=255, unique=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["listener_id", "-at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.attempt}: {self.outcome}"
