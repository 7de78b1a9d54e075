"""Endpoint health in a real Redis: deduplication, claims, breakers, rate limits, disabling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from delivery_workers.health import EndpointHealth
from durian import conf
from durian.embedded import free_port

T = TypeVar("T")

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def run(redis_url: str, body: Callable[[EndpointHealth, Clock], Awaitable[T]], **over: object) -> T:
    settings = conf.load(
        environ={},
        overrides={"REDIS_URL": redis_url, "BREAKER_THRESHOLD": 3, "BREAKER_COOLDOWN": 10, **over},
    )
    clock = Clock()

    async def go() -> T:
        health = EndpointHealth(settings, clock=clock)
        try:
            return await body(health, clock)
        finally:
            await health.aclose()

    return asyncio.run(go())


async def admit(health: EndpointHealth, job: str, *, rate: float | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return await health.admit(
        job,
        "lst_1",
        rate=rate,
        throttled=bool(kw.get("throttled", False)),
        listener_version=float(kw.get("version", 0.0)),  # type: ignore[arg-type]
    )


def test_a_delivered_job_is_not_sent_again(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> list[str]:
        first = await admit(health, "msg_1")
        await health.settle("msg_1", "lst_1", ok=True, counts=False)
        again = await admit(health, "msg_1")
        return [first.verdict, again.verdict]

    assert run(redis_url, body) == ["go", "done"]


def test_a_job_in_flight_elsewhere_is_busy_until_its_claim_expires(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> tuple[str, float, str]:
        await admit(health, "msg_2")
        busy = await admit(health, "msg_2")  # e.g. redelivered to a second worker
        await health.settle("msg_2", "lst_1", ok=False, counts=True)
        return busy.verdict, busy.until - clock.now, (await admit(health, "msg_2")).verdict

    verdict, wait, after = run(redis_url, body, DELIVERY_TIMEOUT=5)
    assert verdict == "busy" and 10 < wait <= 15
    assert after == "go"  # the claim went with the outcome


def test_the_breaker_opens_probes_once_and_backs_off(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> list[object]:
        seen: list[object] = []
        for n in range(3):
            assert (await admit(health, f"f{n}")).verdict == "go"
            settled = await health.settle(f"f{n}", "lst_1", ok=False, counts=True)
            seen.append(settled.state)
        blocked = await admit(health, "next")
        seen.append((blocked.verdict, blocked.until - clock.now))
        clock.now += 10
        probe = await admit(health, "probe")
        other = await admit(health, "other")  # while the probe is out
        seen += [probe.verdict, other.verdict]
        failed = await health.settle("probe", "lst_1", ok=False, counts=True)
        seen.append((failed.state, failed.open_until - clock.now))  # cooldown doubled
        clock.now += 20
        assert (await admit(health, "probe2")).verdict == "go"
        seen.append((await health.settle("probe2", "lst_1", ok=True, counts=False)).state)
        seen.append((await admit(health, "after")).verdict)
        return seen

    assert run(redis_url, body) == [
        "failing", "failing", "open", ("open", 10.0), "go", "open", ("open", 20.0),
        "recovered", "go",
    ]  # fmt: skip


def test_failures_that_never_reached_the_endpoint_do_not_count(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> str:
        for n in range(5):
            await admit(health, f"r{n}")
            await health.settle(f"r{n}", "lst_1", ok=False, counts=False)
        return (await admit(health, "next")).verdict

    assert run(redis_url, body) == "go"


def test_failing_since_is_the_start_of_the_streak(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> list[float | None]:
        start = clock.now
        await admit(health, "a")
        first = await health.settle("a", "lst_1", ok=False, counts=True)
        clock.now += 100
        await admit(health, "b")
        second = await health.settle("b", "lst_1", ok=False, counts=True)
        return [first.failing_since, second.failing_since, start]

    first, second, start = run(redis_url, body)
    assert first == second == start


def test_the_rate_limit_reserves_slots_in_order(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> list[tuple[str, float]]:
        out = []
        for n in range(4):
            got = await admit(health, f"q{n}", rate=2.0)
            out.append((got.verdict, round(got.until - clock.now, 3) if got.until else 0.0))
        # a job that holds a reserved slot goes without asking again
        held = await admit(health, "q1", rate=2.0, throttled=True)
        out.append((held.verdict, 0.0))
        return out

    assert run(redis_url, body) == [("go", 0.0), ("rate", 0.5), ("rate", 1.0), ("rate", 1.5),
                                    ("go", 0.0)]  # fmt: skip


def test_jobs_of_a_disabled_listener_version_are_refused(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> list[object]:
        first = await health.mark_disabled("lst_1", listener_version=100.0)
        again = await health.mark_disabled("lst_1", listener_version=100.0)
        old = await admit(health, "old", version=100.0)
        new = await admit(health, "new", version=clock.now + 60)  # re-enabled since
        return [first, again, old.verdict, new.verdict]

    assert run(redis_url, body) == [True, False, "disabled", "go"]


def test_without_redis_deliveries_go_on(caplog: pytest.LogCaptureFixture) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> tuple[str, str]:
        admitted = await admit(health, "m")
        settled = await health.settle("m", "lst_1", ok=True, counts=False)
        return admitted.verdict, settled.state

    down = f"redis://127.0.0.1:{free_port()}/0"
    assert run(down, body) == ("go", "ok")
    assert "delivering without it" in caplog.text


def test_a_success_after_failures_below_the_threshold_is_no_recovery(redis_url: str) -> None:
    # The breaker never opened, so there is nothing to announce as closed again.
    async def body(health: EndpointHealth, clock: Clock) -> list[str]:
        await admit(health, "t1")
        failed = await health.settle("t1", "lst_1", ok=False, counts=True)
        await admit(health, "t2")
        ok = await health.settle("t2", "lst_1", ok=True, counts=False)
        return [failed.state, ok.state]

    assert run(redis_url, body) == ["failing", "ok"]


def test_many_calls_at_once_are_answered_each_even_after_a_script_flush(redis_url: str) -> None:
    async def body(health: EndpointHealth, clock: Clock) -> None:
        # Redis forgets its scripts (a restart, SCRIPT FLUSH): they are loaded again.
        await health.redis.script_flush()
        verdicts = await asyncio.gather(*(admit(health, f"job_{i}") for i in range(50)))
        assert {v.verdict for v in verdicts} == {"go"}
        settled = await asyncio.gather(
            *(health.settle(f"job_{i}", "lst_1", ok=True, counts=False) for i in range(50))
        )
        assert {s.state for s in settled} == {"ok"}
        again = await asyncio.gather(*(admit(health, f"job_{i}") for i in range(50)))
        assert {v.verdict for v in again} == {"done"}

    run(redis_url, body)
