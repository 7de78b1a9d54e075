"""Which offsets may be committed when jobs finish out of order.

A partition's committable offset is its lowest offset still in flight, or one
past the highest offset seen when nothing is in flight. Committing that
position means a crash replays only jobs that had not finished (plus, at
worst, finished ones above an unfinished one: at-least-once, never lost).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["TP", "OffsetTracker"]

TP = tuple[str, int]


class OffsetTracker:
    """Thread-safe: the consumer thread revokes while the event loop adds and finishes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[TP, set[int]] = {}
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def add(self, tp: TP, offset: int) -> None:
        with self._lock:
            self._pending.setdefault(tp, set()).add(offset)
            if offset + 1 > self._next.get(tp, -1):
                self._next[tp] = offset + 1

    def done(self, tp: TP, offset: int) -> None:
        with self._lock:
            pending = self._pending.get(tp)
            if pending is not None:
                pending.discard(offset)

    def in_flight(self) -> int:
        with self._lock:
            return sum(len(offsets) for offsets in self._pending.values())

    def committable(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Positions to commit that moved since the last ``mark_committed``."""
        with self._lock:
            wanted = list(self._next) if tps is None else [tp for tp in tps if tp in self._next]
            out = {}
            for tp in wanted:
                pending = self._pending.get(tp)
                position = min(pending) if pending else self._next[tp]
                if position != self._committed.get(tp):
                    out[tp] = position
            return out

    def mark_committed(self, positions: dict[TP, int]) -> None:
        with self._lock:
            self._committed.update(positions)

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions that were revoked (their unfinished jobs will be redelivered)."""
        with self._lock:
            for tp in tps:
                self._pending.pop(tp, None)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)
