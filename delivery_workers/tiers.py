"""The retry tiers: which tier a wait rides, and which tier partitions wait for their head.

A job read from a tier's topic is due the tier's fixed delay after it was
written there. When a partition's head is not due yet, the worker pauses the
partition and rewinds it to the head; ``RetryTiers`` remembers until when, and
``due(now)`` names the partitions to resume. No timers and no sleeping in the
poll loop: the loop asks on every turn, and a waiting tier never holds up
another partition.

Pure bookkeeping with the clock passed in; the worker does the pausing.
"""

from __future__ import annotations

from collections.abc import Iterable

from delivery_workers.offsets import TP
from durian import conf
from durian.backoff import tier_for
from durian.topics import TopicNames

__all__ = ["RetryTiers"]


class RetryTiers:
    def __init__(self, settings: conf.Settings) -> None:
        self.names = TopicNames(settings.topic_prefix)
        self.delays = sorted(set(settings.retry_schedule))
        #: topic -> the tier's fixed delay (seconds).
        self.topics: dict[str, float] = {self.names.deliveries_retry(d): d for d in self.delays}
        #: A wait shorter than this is slept out in the job's task: a trip through a
        #: tier would come back no sooner than the shortest tier.
        self.short_wait = min(self.delays) if self.delays else 1.0
        self._paused: dict[TP, float] = {}

    def topic_for(self, wait: float) -> str:
        """The tier's topic for a job that must wait ``wait`` seconds: the longest tier not
        longer than that; the job carries its own due time for the rest."""
        return self.names.deliveries_retry(tier_for(max(wait, 0.0), self.delays))

    def wait_for_head(self, topic: str, written_at: float, now: float) -> float:
        """Seconds until a record written at ``written_at`` to ``topic`` is due (0: due,
        or not a tier)."""
        delay = self.topics.get(topic)
        if delay is None:
            return 0.0
        return max(written_at + delay - now, 0.0)

    # -- paused partitions ---------------------------------------------------

    def pause(self, tp: TP, until: float) -> None:
        self._paused[tp] = until

    def paused(self, tp: TP) -> bool:
        return tp in self._paused

    def due(self, now: float) -> list[TP]:
        """The paused partitions whose head is due now; they count as resumed."""
        ready = [tp for tp, until in self._paused.items() if until <= now]
        for tp in ready:
            del self._paused[tp]
        return ready

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions revoked: whoever is assigned them next starts afresh."""
        for tp in tps:
            self._paused.pop(tp, None)
