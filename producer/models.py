"""The Django side's own tables: the event outbox, the delivery log, and the
permissions of the web UI.

Listeners are not here: they live on the compacted listeners topic (the one
source of truth). ``Listener`` is an unmanaged model without a table that only
carries the UI's permissions (``durian.view_listener``, ``add_``, ``change_``,
``delete_`` and ``durian.replay_deadletter``), so they can be granted like any
other Django permission.

The delivery log is PostgreSQL (the site's database): it is read per listener,
newest first, and pruned by age, which one index on (listener, time) serves;
it needs no service the site does not run already. ``manage.py durian_log``
fills it from the attempts topic and applies the retention.

The outbox holds each event from the transaction that fired it until Kafka has
acknowledged it (``producer.outbox``); it is empty when the relay keeps up.
"""

from __future__ import annotations

from django.db import models


class Listener(models.Model):
    """Permissions of the listener views (no table: listeners live on Kafka)."""

    class Meta:
        managed = False
        default_permissions = ("view", "add", "change", "delete")
        permissions = [("replay_deadletter", "Can replay dead letters")]


class OutboxEvent(models.Model):
    """One event waiting for ``manage.py durian_relay`` to publish it."""

    #: Which relay publishes it: rows of one key share a shard, and one relay at a time
    #: publishes a shard, in ``id`` order (``producer.outbox.shard_of``).
    shard = models.PositiveSmallIntegerField()
    key = models.BinaryField()
    value = models.BinaryField()
    created_at = models.DateTimeField()
    #: Why Kafka refused it for good (too large for the broker, say); such a row is
    #: passed over until ``durian_relay --retry-refused`` clears it.
    refused = models.TextField(blank=True, default="")

    class Meta:
        db_table = "durian_outbox"

    def __str__(self) -> str:
        return f"outbox event {self.pk} ({bytes(self.key).decode(errors='replace')})"


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
