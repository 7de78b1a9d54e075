"""Which offsets may be committed when jobs finish out of order.

A partition's committable offset is its lowest offset still in flight, or one
past the highest offset seen when nothing is in flight. Committing that
position means a crash replays only jobs that had not finished (plus, at
worst, finished ones above an unfinished one: at-least-once, never lost).

Rebalances make three things impossible here rather than unlikely:

* Only partitions assigned now are committed. A record of a partition that
  was revoked is not tracked (``add`` answers ``None``: drop it, its new owner
  reads it), so nothing this worker holds can move another owner's offset.
* Each assignment of a partition is a new *epoch*. A job read before a
  revocation that finishes after the partition came back reports its old
  epoch and cannot clear the pending entry of the new copy of the same offset.
* The commit at revocation is always sent, whatever was committed before:
  another member may have moved the group's offset meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["TP", "OffsetTracker"]

TP = tuple[str, int]


class OffsetTracker:
    """Thread-safe: the consumer thread assigns and revokes while the event loop adds and
    finishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch: dict[TP, int] = {}
        self._assigned: set[TP] = set()
        self._pending: dict[TP, set[int]] = {}
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def assign(self, tps: Iterable[TP]) -> None:
        """Partitions handed to this worker: tracked from now on, in a new epoch."""
        self._new_epoch(tps, assigned=True)

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions that were revoked (their unfinished jobs will be redelivered)."""
        self._new_epoch(tps, assigned=False)

    def _new_epoch(self, tps: Iterable[TP], *, assigned: bool) -> None:
        with self._lock:
            for tp in tps:
                if assigned:
                    self._assigned.add(tp)
                else:
                    self._assigned.discard(tp)
                self._epoch[tp] = self._epoch.get(tp, 0) + 1
                self._pending.pop(tp, None)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)

    def add(self, tp: TP, offset: int) -> int | None:
        """Track a record; returns the epoch to pass to :meth:`done`, or ``None`` when
        ``tp`` is not assigned (drop the record: it is not this worker's to handle)."""
        with self._lock:
            if tp not in self._assigned:
                return None
            self._pending.setdefault(tp, set()).add(offset)
            if offset + 1 > self._next.get(tp, -1):
                self._next[tp] = offset + 1
            return self._epoch[tp]

    def done(self, tp: TP, offset: int, epoch: int) -> None:
        with self._lock:
            if self._epoch.get(tp) != epoch:
                return  # read before a revocation: that copy is not tracked any more
            pending = self._pending.get(tp)
            if pending is not None:
                pending.discard(offset)

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(offsets) for offsets in self._pending.values())

    def committable(self, tps: Iterable[TP] | None = None, *, force: bool = False) -> dict[TP, int]:
        """Positions to commit for assigned partitions (of ``tps``, when given): those that
        moved since the last ``mark_committed``, or every known one with ``force``."""
        with self._lock:
            wanted = self._assigned if tps is None else self._assigned.intersection(tps)
            out = {}
            for tp in wanted:
                if tp not in self._next:
                    continue
                pending = self._pending.get(tp)
                position = min(pending) if pending else self._next[tp]
                if force or position != self._committed.get(tp):
                    out[tp] = position
            return out

    def mark_committed(self, positions: dict[TP, int]) -> None:
        with self._lock:
            self._committed.update(
                (tp, offset) for tp, offset in positions.items() if tp in self._assigned
            )
