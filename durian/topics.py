"""Topic names and specs. No topic name is written anywhere else.

With the default prefix::

    durian.events                     events from Django, keyed <hook>:<pk>
    durian.listeners                  the listener table (compacted; tombstone = deleted)
    durian.hooks                      the hooks the sites declare (compacted, keyed by name)
    durian.deliveries                 delivery jobs, keyed <listener id>/<object id>
    durian.deliveries.retry.<delay>   one backoff tier per distinct retry delay
    durian.deliveries.dead            dead letters: exhausted jobs with their last error
    durian.attempts                   one record per HTTP attempt (the delivery log)
    durian.parked                     records that could not be decoded, kept for inspection
"""

from __future__ import annotations

from dataclasses import dataclass, field

from durian.conf import Settings

__all__ = ["TopicNames", "TopicSpec", "format_delay", "topic_specs"]


def format_delay(seconds: float) -> str:
    """A retry tier's name part: 5 -> '5s', 300 -> '5m', 7200 -> '2h', 90 -> '90s'."""
    whole = int(seconds)
    if whole != seconds or whole <= 0:
        return f"{int(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


@dataclass(frozen=True)
class TopicNames:
    """Every topic name, derived from one prefix."""

    prefix: str = "durian"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def listeners(self) -> str:
        return f"{self.prefix}.listeners"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}.deliveries"

    def deliveries_retry(self, delay: float) -> str:
        return f"{self.prefix}.deliveries.retry.{format_delay(delay)}"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.deliveries.dead"

    @property
    def attempts(self) -> str:
        return f"{self.prefix}.attempts"

    @property
    def parked(self) -> str:
        return f"{self.prefix}.parked"

    @property
    def hooks(self) -> str:
        return f"{self.prefix}.hooks"

    def group(self, role: str) -> str:
        """Consumer group ids: ``<prefix>.stream``, ``<prefix>.deliver``, ``<prefix>.retry.5s``."""
        return f"{self.prefix}.{role}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic durian needs, with partitions and configs from ``settings``."""
    names = TopicNames(settings.topic_prefix)
    rf = settings.replication_factor
    job_parts = settings.deliveries_partitions
    specs = [
        TopicSpec(names.events, settings.events_partitions, rf),
        TopicSpec(
            names.listeners,
            settings.listeners_partitions,
            rf,
            {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
        ),
        TopicSpec(names.deliveries, job_parts, rf),
    ]
    specs += [
        TopicSpec(names.deliveries_retry(delay), job_parts, rf)
        for delay in sorted(set(settings.retry_schedule))
    ]
    specs += [
        TopicSpec(names.dead, job_parts, rf),
        TopicSpec(names.attempts, settings.attempts_partitions, rf),
        TopicSpec(names.parked, 1, rf),
        TopicSpec(names.hooks, 1, rf, {"cleanup.policy": "compact"}),
    ]
    return specs
