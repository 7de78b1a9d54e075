"""The delivery workers' throughput, against a bare HTTP client in the same run.

On the embedded broker and Redis, with an aiohttp receiver in another process:

1. baseline: the workers' own HTTP path (``Dispatcher``: signing, the guarded
   transport, the capped read) sends N jobs at concurrency 64 to the receiver,
   without Kafka or Redis, on uvloop as the worker runs: the ceiling of HTTP
   alone on this machine;
2. one ``durian-deliver`` process works off N jobs for 10 healthy endpoints
   (jobs written beforehand): what Kafka, Redis and the bookkeeping cost on top;
3. the same with N more jobs for 10 endpoints that never answer: how much of (2)
   the healthy endpoints keep.

Rates are receipts per second between the 10th and 90th percentile of receipts
(steady state).

    python benchmarks/delivery.py [N]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvloop
from aiohttp import web
from common import profile, record, stop
from confluent_kafka import Producer

from durian import conf
from durian.embedded import EmbeddedStack, free_port
from durian.http.dispatch import Dispatcher
from durian.kafka import confluent_config, produce
from durian.listener_store import ListenerStore
from durian.records import DeliveryJob, Event, ListenerSpec, encode, job_key, new_id
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin

BIN = Path(sys.executable).parent


def serve(port: int) -> None:
    """Answers /ok/* at once and /stuck/* never (within a minute); GET /times lists
    the receipt times of /ok/* requests since the last GET."""
    times: list[float] = []

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        times.append(time.time())
        return web.Response(status=204)

    async def stuck(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.Response(status=204)

    async def report(request: web.Request) -> web.Response:
        out = list(times)
        times.clear()
        return web.json_response(out)

    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - stuck requests are cut off at exit
    app = web.Application()
    app.router.add_post("/ok/{tail:.*}", ok)
    app.router.add_post("/stuck/{tail:.*}", stuck)
    app.router.add_get("/times", report)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def steady_rate(times: list[float]) -> float:
    times = sorted(times)
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    return (len(times) * 8 // 10) / (high - low)


def collect(port: int, expected: int, timeout: float = 300) -> list[float]:
    got: list[float] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(got)} of {expected} deliveries within {timeout} s")
        time.sleep(0.5)
        got += httpx.get(f"http://127.0.0.1:{port}/times").json()
    return got


async def baseline(port: int, n: int, concurrency: int = 64) -> list[float]:
    """The workers' own HTTP path alone (``Dispatcher.attempt``: signing, the guarded
    transport, the capped read), with no Kafka and no Redis."""
    settings = conf.load(environ={}, overrides={"ALLOW_PRIVATE_ADDRESSES": True})
    dispatcher = Dispatcher(settings)
    target = listener(f"http://127.0.0.1:{port}/ok/base")
    todo = iter(jobs(target, n))

    async def worker() -> None:
        for job in todo:
            result = await dispatcher.attempt(job, target)
            assert result.ok, result.error

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await dispatcher.aclose()
    return collect(port, n)


def listener(url: str) -> ListenerSpec:
    return ListenerSpec(id=new_id("lst"), hook="person", url=url, secret=generate_secret())


def jobs(target: ListenerSpec, count: int) -> list[DeliveryJob]:
    events = (
        Event(id=new_id("evt"), hook="person", occurred_at=datetime.now(UTC), data={"n": n})
        for n in range(count)
    )
    return [DeliveryJob.of(event, target) for event in events]


def registered(settings: conf.Settings, urls: list[str]) -> list[ListenerSpec]:
    """Listeners for ``urls``, written to the listeners topic (jobs only name them)."""
    targets = [listener(url) for url in urls]
    with ListenerStore(settings) as store:
        store.put(*targets)
    return targets


def write_jobs(settings: conf.Settings, batch: list[DeliveryJob]) -> None:
    producer = Producer(confluent_config(settings, "writer"))
    topic = f"{settings.topic_prefix}.deliveries"
    for job in batch:
        produce(producer, topic, encode(job), key=job_key(job.listener_id, job.event))
    producer.flush(60)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    port = free_port()
    receiver = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    receiver.start()
    stack = EmbeddedStack(broker_port=0)  # and a redis-server of its own
    worker: subprocess.Popen[bytes] | None = None
    try:
        stack.start(on_step=lambda line: None)
        time.sleep(0.5)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the worker's
            rate = steady_rate(runner.run(baseline(port, n)))
        print(f"the workers' HTTP path alone, 64-way:   {rate:8.0f} requests/s")
        record("ceiling HTTP path", rate)
        env = {
            "DURIAN_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
            "DURIAN_REDIS_URL": stack.redis_url or "",
            "DURIAN_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:8]}",
            "DURIAN_EMBEDDED": "true",
            "DURIAN_ALLOW_PRIVATE_ADDRESSES": "true",
            "DURIAN_DELIVERIES_PARTITIONS": "8",
            "DURIAN_DELIVERY_TIMEOUT": "2",
        }
        settings = conf.load(environ=env)
        TopicAdmin(settings).ensure()
        worker = subprocess.Popen(
            [str(BIN / "durian-deliver"), "--concurrency", "64"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        (warm,) = registered(settings, [f"{url}/ok/warm"])
        write_jobs(settings, jobs(warm, 10))
        collect(port, 10, timeout=60)
        per = n // 10
        healthy = [j for t in registered(settings, [f"{url}/ok/{e}" for e in range(10)])
                   for j in jobs(t, per)]  # fmt: skip
        write_jobs(settings, healthy)
        profile(worker.pid, "deliver", 5)
        alone = steady_rate(collect(port, len(healthy)))
        print(f"durian-deliver, 10 healthy endpoints:   {alone:8.0f} deliveries/s "
              f"({alone / rate:.0%} of the HTTP path alone)")  # fmt: skip
        record("delivery worker alone", alone)
        healthy = [j for t in registered(settings, [f"{url}/ok/h{e}" for e in range(10)])
                   for j in jobs(t, per)]  # fmt: skip
        broken = [j for t in registered(settings, [f"{url}/stuck/{e}" for e in range(10)])
                  for j in jobs(t, per)]  # fmt: skip
        write_jobs(settings, [job for pair in zip(broken, healthy, strict=True) for job in pair])
        mixed = steady_rate(collect(port, len(healthy)))
        print(f"  ... with 10 more endpoints that never answer: {mixed:8.0f} deliveries/s "
              f"({mixed / alone:.0%} kept)")  # fmt: skip
    finally:
        if worker is not None:
            stop(worker)
        stack.stop()
        receiver.terminate()


if __name__ == "__main__":
    main()
