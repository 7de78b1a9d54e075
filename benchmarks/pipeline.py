"""The whole pipeline on the embedded broker: Django send -> Faust -> delivery worker -> receiver.

Prints, from one run:

* producer cost per event: ``Hook.send()`` (build, encode, produce on commit)
  against a bare ``confluent_kafka.Producer.produce()`` of the same bytes;
* throughput: N events sent flat out, events/s until the last one arrived;
* latency send -> receipt, p50/p99, for events paced at 50/s (no backlog);
* baseline: the same receiver hit directly by a bare httpx client (aiohttp
  transport, 64-way), i.e. what the receiver and the box can take.

    python benchmarks/pipeline.py [N]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import django
import httpx
from aiohttp import web
from django.conf import settings as django_settings
from httpx_aiohttp import AiohttpTransport

from durian import conf
from durian.embedded import EmbeddedBroker, free_port, spawn
from durian.listener_store import ListenerStore
from durian.records import ListenerSpec, new_id
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin

BIN = Path(sys.executable).parent


def receive(port: int, out: str) -> None:
    """The receiver: logs 'seq latency_ns' per request to ``out``."""
    log = open(out, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    async def hook(request: web.Request) -> web.Response:
        data = (await request.json())["data"]
        log.write(f"{data['seq']} {time.time_ns() - data['t']}\n")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def arrived(path: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for line in path.read_text().splitlines():
        seq, latency = line.split()
        out.setdefault(int(seq), int(latency))
    return out


def wait(path: Path, predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(arrived(path)):  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


async def bare_client(url: str, n: int) -> float:
    body = b'{"type":"bench","timestamp":"x","data":{"seq":-1,"t":0}}'
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        pending = iter(range(n))

        async def worker() -> None:
            for _ in pending:
                response = await client.post(url, content=body)
                assert response.status_code == 204

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(64)))
        return n / (time.perf_counter() - started)


def stages(settings: conf.Settings, since: float, n: int) -> None:
    """Where the queue (or the time) goes: when each event and its job were written."""
    from durian.reading import read_since
    from durian.records import DeliveryJob, Event, decode
    from durian.topics import TopicNames

    names = TopicNames(settings.topic_prefix)
    topics = read_since(settings, {names.events: since, names.deliveries: since})
    events = {decode(r.value or b"", Event).id: r.timestamp for r in topics[names.events]}
    jobs = {decode(r.value or b"", DeliveryJob).event.id: r.timestamp
            for r in topics[names.deliveries]}  # fmt: skip
    if len(events) < n or len(jobs) < n:
        print(f"stages          {len(events)} events, {len(jobs)} jobs read back")
        return
    hop = sorted((jobs[e] - t) * 1000 for e, t in events.items() if e in jobs)
    rate = n / (max(jobs.values()) - min(events.values()))
    print(
        f"stages          stream: jobs written {rate:,.0f}/s; "
        f"event -> job p50 {pct(hop, 50):,.1f} ms, p99 {pct(hop, 99):,.1f} ms"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    work = Path(tempfile.mkdtemp(prefix="durian-bench-"))
    received = work / "received.txt"
    received.touch()
    port = free_port()
    receiver = multiprocessing.Process(target=receive, args=(port, str(received)), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{port}/hook"
    with EmbeddedBroker() as broker:
        assert isinstance(broker, EmbeddedBroker)
        env = {
            **os.environ,
            "DURIAN_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DURIAN_EMBEDDED": "true",
            "DURIAN_TOPIC_PREFIX": "bench",
            "DURIAN_ALLOW_PRIVATE_ADDRESSES": "true",
            "DURIAN_EVENTS_PARTITIONS": "4",
            "DURIAN_DELIVERIES_PARTITIONS": "4",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        settings = conf.load(environ=env)
        TopicAdmin(settings).ensure()
        ListenerStore(settings).put(
            ListenerSpec(id=new_id("lst"), hook="bench", url=url, secret=generate_secret())
        )
        workers = [
            spawn([str(BIN / "durian-stream")], env=env, log=work / "stream.log"),
            spawn([str(BIN / "durian-deliver")], env=env, log=work / "deliver.log"),
        ]
        try:
            run(n, settings, url, received)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                try:
                    worker.wait(20)
                except subprocess.TimeoutExpired:
                    worker.kill()
    receiver.terminate()
    print(f"(logs in {work})")


def run(n: int, settings: conf.Settings, url: str, received: Path) -> None:
    overrides = {
        "BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "EMBEDDED": True,
    }
    django_settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "producer"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DURIAN=overrides,
        USE_TZ=True,
    )
    django.setup()
    from confluent_kafka import Producer

    from durian.kafka import confluent_config
    from producer import publish
    from producer.hooks import Hook

    hook = Hook(name="bench")

    # Warm up: the stream worker joins and recovers the table, the worker joins.
    seq = -1000
    while not arrived(received):
        hook.send(seq=seq, t=time.time_ns())
        seq += 1
        publish.flush()
        time.sleep(0.5)

    # Producer cost: Hook.send vs a bare produce() of the same size.
    bare = Producer(confluent_config(settings, "producer"))
    sample = b"x" * 200
    count = 5000
    started = time.perf_counter()
    for _ in range(count):
        bare.produce("bench.parked", sample)
        bare.poll(0)
    bare_us = (time.perf_counter() - started) / count * 1e6
    bare.flush(30)
    started = time.perf_counter()
    for i in range(count):
        hook.send(seq=-1, t=0, i=i)
    send_us = (time.perf_counter() - started) / count * 1e6
    publish.flush(60)
    print(f"producer cost   Hook.send() {send_us:6.1f} µs/event   bare produce() {bare_us:6.1f} µs")

    # Throughput: N events flat out.
    burst_from = time.time()
    started = time.time_ns()
    for i in range(n):
        hook.send(seq=i, t=time.time_ns())
    publish.flush(60)
    ok = wait(received, lambda got: all(i in got for i in range(n)), 300)
    got = arrived(received)
    missing = [i for i in range(n) if i not in got]
    elapsed_s = (time.time_ns() - started) / 1e9 if not ok else None
    lat = sorted(got[i] / 1e6 for i in range(n) if i in got)
    span = (max(lat) if lat else 0) / 1000
    rate = len(lat) / (elapsed_s or max(span, 1e-9))
    print(
        f"throughput      {len(lat):,}/{n:,} events delivered, {rate:,.0f} events/s "
        f"(burst latency p50 {pct(lat, 50):,.0f} ms, p99 {pct(lat, 99):,.0f} ms)"
    )
    if missing:
        print(f"                MISSING {len(missing)}: {missing[:20]}")
    stages(settings, burst_from, n)

    # Latency without a backlog: 250 events at 50/s.
    paced_from = time.time()
    paced = list(range(n, n + 250))
    for i in paced:
        hook.send(seq=i, t=time.time_ns())
        publish.publisher().producer.poll(0)
        time.sleep(0.02)
    publish.flush(60)
    wait(received, lambda got: all(i in got for i in paced), 120)
    got = arrived(received)
    lat = sorted(got[i] / 1e6 for i in paced if i in got)
    print(
        f"latency         paced 50/s: p50 {pct(lat, 50):6.1f} ms   p99 {pct(lat, 99):6.1f} ms "
        f"({len(lat)}/{len(paced)} arrived)"
    )
    stages(settings, paced_from, len(paced))

    rate = asyncio.run(bare_client(url, 5000))
    print(
        f"baseline        bare httpx (aiohttp transport) -> same receiver, c=64: {rate:,.0f} req/s"
    )


if __name__ == "__main__":
    main()
