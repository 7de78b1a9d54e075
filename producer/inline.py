"""Inline mode (the seed's ``async = False``): match and deliver inside the Django process.

For development and for a site's own tests: no broker, no workers. Listeners
saved in inline mode live in this process's table; after a transaction
commits, each event is matched with the same matchers and POSTed with the
delivery workers' own code (``durian.http``): the same signed request, the
same transport and address guard (checked as it connects, no second lookup,
no proxy from the environment), the same timeouts including the total
deadline, no redirects and the same response cap. There are no retries: each
attempt is kept in ``attempts`` for tests to inspect, and a failure is logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from durian import conf
from durian.http.dispatch import AttemptResult, Dispatcher
from durian.match import deepmatch
from durian.records import DeliveryJob, Event, ListenerSpec, job_id

__all__ = ["InlineAttempt", "attempts", "clear", "deliver", "listeners"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class InlineAttempt:
    job_id: str
    listener_id: str
    url: str
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


listeners: dict[str, ListenerSpec] = {}
attempts: list[InlineAttempt] = []
_lock = threading.Lock()


def put(listener: ListenerSpec) -> None:
    with _lock:
        listeners[listener.id] = listener


def delete(listener_id: str) -> None:
    with _lock:
        listeners.pop(listener_id, None)


def clear() -> None:
    """Forget every inline listener and attempt (call it between tests)."""
    with _lock:
        listeners.clear()
        attempts.clear()


def deliver(event: Event, settings: conf.Settings) -> list[InlineAttempt]:
    """POST ``event`` to every matching active inline listener, one after another."""
    with _lock:
        matching = sorted(
            (
                listener
                for listener in listeners.values()
                if listener.active
                and listener.hook == event.hook
                and deepmatch(listener.compiled_match(), event.data)
            ),
            key=lambda listener: listener.id,
        )
    if not matching:
        return []
    jobs = [
        (DeliveryJob(id=job_id(event.id, lst.id), event=event, listener_id=lst.id), lst)
        for lst in matching
    ]
    results = _run(_attempt_each(jobs, settings))
    done = []
    for (job, listener), result in zip(jobs, results, strict=True):
        error = None if result.ok else result.error or "failed"
        if error:
            logger.error("inline delivery of %s to %s failed: %s", job.id, listener.id, error)
        done.append(InlineAttempt(job.id, listener.id, listener.url, result.status_code, error))
    with _lock:
        attempts.extend(done)
    return done


async def _attempt_each(
    jobs: list[tuple[DeliveryJob, ListenerSpec]], settings: conf.Settings
) -> list[AttemptResult]:
    dispatcher = Dispatcher(settings)
    try:
        return [await dispatcher.attempt(job, listener) for job, listener in jobs]
    finally:
        await dispatcher.aclose()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from synchronous code, also where this thread already
    runs an event loop (then on a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
