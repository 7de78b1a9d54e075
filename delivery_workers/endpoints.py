"""What one delivery worker knows about each endpoint (listener) it is sending to.

Redis (``delivery_workers.health``) holds the truth every worker shares; this
is the worker's own view, which spares Redis a question per job and keeps a
slow or broken endpoint from taking the worker's time:

* how many of the listener's jobs this worker holds, and its share of HTTP
  slots (``endpoint_concurrency``);
* whether requests are in flight with no answer for a while (``stalled``);
* breakers seen open, and until when (a cache of Redis's answer);
* when it last warned about the listener's dead letters (once a minute).
"""

from __future__ import annotations

import asyncio
from collections import Counter

__all__ = ["Endpoint", "Endpoints"]

#: An endpoint with requests in flight and no answer for this long counts as stalled.
STALLED_AFTER = 0.25
#: Seconds between two warnings about dead letters of one listener.
WARN_EVERY = 60.0
#: Entries kept per map before those that no longer matter are dropped.
_KEEP = 10_000


class Endpoint:
    """This worker's HTTP slots for one listener, and whether its answers keep coming."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.in_flight = 0
        self.last_progress = 0.0
        """When a request last started on an idle endpoint, or last finished."""

    def started(self, now: float) -> None:
        if not self.in_flight:
            self.last_progress = now
        self.in_flight += 1

    def finished(self, now: float) -> None:
        self.in_flight -= 1
        self.last_progress = now

    def stalled(self, now: float) -> bool:
        """Requests are in flight and none has finished for a while: its backlog will not
        move soon. A slow endpoint that answers steadily, even at seconds per request,
        keeps finishing one every few moments at its concurrency and is not stalled."""
        return self.in_flight > 0 and now - self.last_progress > STALLED_AFTER


class Endpoints:
    def __init__(self, concurrency: int, pending: int) -> None:
        self.concurrency = concurrency
        #: Jobs of one listener in hand at most; more wait on a tier, so that a slow
        #: endpoint with a backlog cannot fill the worker and stall the others.
        self.pending = pending
        self._held: Counter[str] = Counter()
        self._endpoints: dict[str, Endpoint] = {}
        self._open: dict[str, float] = {}
        self._warned: dict[str, float] = {}

    # -- jobs in hand ---------------------------------------------------------

    def hold(self, listener_id: str) -> None:
        self._held[listener_id] += 1

    def release(self, listener_id: str) -> None:
        self._held[listener_id] -= 1
        if self._held[listener_id] <= 0:
            del self._held[listener_id]
            self._endpoints.pop(listener_id, None)  # its last job is done

    def endpoint(self, listener_id: str) -> Endpoint:
        found = self._endpoints.get(listener_id)
        if found is None:
            found = self._endpoints[listener_id] = Endpoint(self.concurrency)
        return found

    # -- breakers -------------------------------------------------------------

    def remember_open(self, listener_id: str, until: float, now: float) -> None:
        if len(self._open) > _KEEP:  # forget breakers that have closed or may probe
            self._open = {lid: t for lid, t in self._open.items() if t > now}
        self._open[listener_id] = until

    def open_until(self, listener_id: str) -> float:
        """Until when this worker saw the listener's breaker open (0: not seen open)."""
        return self._open.get(listener_id, 0.0) if self._open else 0.0

    # -- the decision to pass a job by ----------------------------------------

    def pass_by(
        self, listener_id: str, now: float, short_wait: float, busy_wait: float
    ) -> float | None:
        """How long a job just read must wait because its endpoint cannot take it now
        (``None``: it can): this worker saw the breaker open, or holds its share of the
        endpoint's jobs already while none of them moves (then ``busy_wait``: by then
        the requests in flight have finished or timed out)."""
        wait = self.open_until(listener_id) - now
        if wait >= short_wait:
            return wait
        if self._held.get(listener_id, 0) < self.pending:
            return None
        endpoint = self._endpoints.get(listener_id)
        if endpoint is None or not endpoint.stalled(now):
            return None  # a backlog, but it moves: keep reading it
        return max(short_wait, busy_wait)

    # -- warnings ---------------------------------------------------------------

    def warn_now(self, listener_id: str, now: float) -> bool:
        """Whether a warning about ``listener_id`` is due (one per ``WARN_EVERY``)."""
        if now - self._warned.get(listener_id, float("-inf")) < WARN_EVERY:
            return False
        if len(self._warned) > _KEEP:
            self._warned = {lid: t for lid, t in self._warned.items() if now - t < WARN_EVERY}
        self._warned[listener_id] = now
        return True
