"""When to try a failed delivery again: pure functions, no clock or I/O of their own.

The schedule is a list of delays (seconds) before retry 1, 2, ...; the default
follows Standard Webhooks / Svix: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
Each delay is spread by +/- ``jitter`` so that a burst of failures does not
come back as a burst. A receiver's ``Retry-After`` may stretch a delay, up to a ceiling
(``max_retry_after``), so that it can neither hammer nor stall us.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Sequence

__all__ = ["next_delay", "parse_retry_after", "retry_after_delay", "tier_for"]


def next_delay(
    failed_attempt: int,
    schedule: Sequence[float],
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait after attempt ``failed_attempt`` (1-based) failed; ``None`` = give up."""
    if failed_attempt < 1:
        raise ValueError("attempts are counted from 1")
    if failed_attempt > len(schedule):
        return None
    base = float(schedule[failed_attempt - 1])
    return base * (1 + jitter * (2 * rand() - 1))


def tier_for(delay: float, tiers: Sequence[float]) -> float:
    """The retry topic for a delay: the longest tier not longer than it (else the shortest).

    A job waits in its tier's topic for the tier's fixed delay and then carries
    its own due time, so a 10 h delay can ride the 10 h tier and a jittered
    4.8 s delay the 5 s tier without one topic per distinct delay.
    """
    ordered = sorted(set(tiers))
    if not ordered:
        raise ValueError("there are no retry tiers")
    fitting = [tier for tier in ordered if tier <= delay]
    return fitting[-1] if fitting else ordered[0]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def retry_after_delay(scheduled: float, retry_after: float | None, ceiling: float) -> float:
    """The delay to use when the receiver asked for ``retry_after`` seconds.

    Never sooner than scheduled (a receiver cannot make us hammer it), never
    later than ``ceiling`` (nor can it park a job for days), unless the
    schedule itself is longer.
    """
    if retry_after is None:
        return scheduled
    return min(max(retry_after, scheduled), max(ceiling, scheduled))
