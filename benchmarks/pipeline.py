"""The whole pipeline on the embedded stack: Django save -> Faust -> delivery worker -> receiver.

One run, one broker, one receiver; every scenario on topics of its own. Prints:

* the ceilings measured in the same run: a bare aiohttp client and a bare httpx
  client (the workers' transport) POSTing to the same receiver at 64-way;
* the producer's cost per event: ``Hook.send()`` against a bare ``produce()``;
* per scenario (listeners per event; stream + delivery worker processes):
  deliveries/s for a burst of N events (the steady rate: receipts between the
  burst's 10th and 90th percentile), the burst's save -> receipt p50/p99/max, the
  stream workers' jobs/s in the burst,
  and save -> receipt p50/p99 for events paced at 50/s and at 500/s;
* the 1 + 1 burst repeated five times on the same stack (same workers, same
  topics, each burst adding to them): deliveries/s of each, and their spread.

    python benchmarks/pipeline.py [N] [SCENARIOS]   (default N = 2000; SCENARIOS
                                                    e.g. 1x1,10x1: listeners x processes)
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import django
import httpx
from aiohttp import web
from common import record, stop
from django.conf import settings as django_settings
from httpx_aiohttp import AiohttpTransport

from durian import conf
from durian.embedded import EmbeddedBroker, EmbeddedRedis, free_port, spawn
from durian.listener_store import ListenerStore
from durian.reading import read_since
from durian.records import DeliveryJob, Event, ListenerSpec, decode, new_id
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames

BIN = Path(sys.executable).parent
#: (listeners per event, stream + delivery worker processes)
SCENARIOS = [(1, 1), (10, 1), (1, 2), (1, 4)]


def receive(port: int, out: str) -> None:
    """The receiver: logs 'path seq latency_ns' per request to ``out``."""
    log = open(out, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    async def hook(request: web.Request) -> web.Response:
        data = (await request.json())["data"]
        log.write(f"{request.path} {data['seq']} {time.time_ns() - data['t']}\n")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Receipts:
    def __init__(self, path: Path) -> None:
        self.path = path

    def under(self, prefix: str) -> dict[int, list[float]]:
        """seq -> latencies (ms) of the receipts under ``prefix`` (first per path)."""
        seen: set[tuple[str, int]] = set()
        out: dict[int, list[float]] = defaultdict(list)
        text = self.path.read_text()
        # The receiver may be halfway through its last line: only whole lines count.
        for line in text[: text.rfind("\n") + 1].splitlines():
            path, seq, latency = line.split()
            if path.startswith(prefix) and (path, int(seq)) not in seen:
                seen.add((path, int(seq)))
                out[int(seq)].append(int(latency) / 1e6)
        return out

    def wait(self, prefix: str, seqs: range, copies: int, timeout: float) -> dict[int, list[float]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.under(prefix)
            if all(len(got.get(s, ())) >= copies for s in seqs) or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


async def ceiling(url: str, n: int, bare_aiohttp: bool) -> float:
    body = b'{"type":"bench","timestamp":"x","data":{"seq":-1,"t":0}}'
    pending = iter(range(n))
    if bare_aiohttp:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                for _ in pending:
                    async with session.post(url, data=body) as response:
                        await response.read()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(64)))
            return n / (time.perf_counter() - started)
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:

        async def other() -> None:
            for _ in pending:
                await client.post(url, content=body)

        started = time.perf_counter()
        await asyncio.gather(*(other() for _ in range(64)))
        return n / (time.perf_counter() - started)


@dataclass
class Row:
    name: str
    rate: float
    burst: tuple[float, float, float]
    stream_rate: float
    paced: dict[int, tuple[float, float]]
    missing: int
    repeats: list[float]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    # Only some scenarios: "1x1,10x1" (listeners x processes per role).
    chosen = [tuple(int(x) for x in s.split("x")) for s in sys.argv[2].split(",")] if (
        len(sys.argv) > 2) else SCENARIOS  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="durian-bench-"))
    (work / "received.txt").touch()
    receipts = Receipts(work / "received.txt")
    port = free_port()
    receiver = multiprocessing.Process(target=receive, args=(port, str(receipts.path)), daemon=True)
    receiver.start()
    base = f"http://127.0.0.1:{port}"
    time.sleep(0.5)
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis:
        assert isinstance(broker, EmbeddedBroker)
        env = {
            **os.environ,
            "DURIAN_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DURIAN_REDIS_URL": redis.url,
            "DURIAN_EMBEDDED": "true",
            "DURIAN_ALLOW_PRIVATE_ADDRESSES": "true",
            "DURIAN_EVENTS_PARTITIONS": "4",
            "DURIAN_DELIVERIES_PARTITIONS": "4",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        django_settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "producer"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            DURIAN={
                "BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "EMBEDDED": True,
                "OUTBOX": False,
            },
            USE_TZ=True,
        )
        django.setup()
        bare = asyncio.run(ceiling(f"{base}/ceiling", 5000, bare_aiohttp=True))
        through = asyncio.run(ceiling(f"{base}/ceiling", 5000, bare_aiohttp=False))
        print(f"ceilings        bare aiohttp {bare:,.0f} req/s; bare httpx on aiohttp "
              f"(the workers' transport) {through:,.0f} req/s; c=64, same receiver")  # fmt: skip
        record("ceiling aiohttp", bare)
        record("ceiling httpx", through)
        rows = []
        for index, (listeners, processes) in enumerate(chosen):
            prefix = f"bench{index}"
            rows.append(scenario(env, prefix, base, receipts, n, listeners, processes, work))
    receiver.terminate()
    print()
    print(f"{'scenario':34} {'deliveries/s':>12} {'burst p50/p99/max s':>20} {'stream jobs/s':>13} "
          f"{'50/s p50/p99 ms':>16} {'500/s p50/p99 ms':>17}")  # fmt: skip
    for row in rows:
        (a50, b50), (a500, b500) = row.paced[50], row.paced[500]
        burst = " /".join(f"{x:5.2f}" for x in row.burst)
        print(
            f"{row.name:34} {row.rate:12,.0f} {burst:>20} "
            f"{row.stream_rate:13,.0f} {a50:7.1f} / {b50:6.1f} {a500:8.1f} / {b500:6.1f}"
            + (f"  MISSING {row.missing}" if row.missing else "")
        )
    for row in rows:
        key = row.name.replace(" workers", "")
        record(f"deliveries/s {key}", row.rate)
        record(f"burst p99 s {key}", row.burst[1])
        record(f"stream jobs/s {key}", row.stream_rate)
        for per_second, (p50, p99) in row.paced.items():
            record(f"{per_second}/s p50 ms {key}", p50)
            record(f"{per_second}/s p99 ms {key}", p99)
        record(f"missing {key}", row.missing)
        if row.repeats:
            spread = (max(row.repeats) - min(row.repeats)) / max(row.repeats)
            print(f"{row.name}: the burst five times on one stack: "
                  + ", ".join(f"{r:,.0f}" for r in row.repeats)
                  + f" deliveries/s (spread {spread:.0%} of the highest)")  # fmt: skip
            record("repeat spread", spread)
    print(f"(logs in {work})")


def scenario(
    env: dict[str, str],
    prefix: str,
    base: str,
    receipts: Receipts,
    n: int,
    listeners: int,
    processes: int,
    work: Path,
) -> Row:
    from django.test.utils import override_settings

    from producer import publish
    from producer.hooks import Hook

    env = {**env, "DURIAN_TOPIC_PREFIX": prefix}
    settings = conf.load(environ=env)
    TopicAdmin(settings).ensure()
    with ListenerStore(settings) as store:
        store.put(*(
            ListenerSpec(id=new_id("lst"), hook="bench", url=f"{base}/{prefix}/{i}",
                         secret=generate_secret())
            for i in range(listeners)
        ))  # fmt: skip
    workers = []
    for number in range(processes):
        workers.append(spawn([str(BIN / "durian-stream")], env=env,
                             log=work / f"{prefix}-stream-{number}.log"))  # fmt: skip
        workers.append(spawn([str(BIN / "durian-deliver")], env=env,
                             log=work / f"{prefix}-deliver-{number}.log"))  # fmt: skip
    name = f"{listeners} listener{'s' if listeners > 1 else ''}, {processes}+{processes} workers"
    # The direct path: this measures the pipeline after the producer; the outbox's hop
    # (2-3 ms, benchmarks/saves.py) comes on top of it.
    overrides = {"BOOTSTRAP_SERVERS": settings.bootstrap_servers, "TOPIC_PREFIX": prefix,
                 "EMBEDDED": True, "OUTBOX": False}  # fmt: skip
    try:
        with override_settings(DURIAN=overrides):
            hook = Hook(name="bench")
            if processes == 1 and listeners == 1:
                producer_cost(hook, settings)
            # Warm up: every worker has joined and the table is read.
            seq = -1_000_000
            deadline = time.monotonic() + 120
            while len(receipts.under(f"/{prefix}/").get(seq - 1, [])) < listeners:
                hook.send(seq=seq, t=time.time_ns())
                publish.flush()
                seq += 1
                time.sleep(0.5)
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: nothing arrived within 120 s; see {work}")
            time.sleep(2 * processes)  # let a second worker's rebalance settle
            burst_from = time.time()
            started = time.perf_counter()
            for i in range(n):
                hook.send(seq=i, t=time.time_ns())
            publish.flush(60)
            got = receipts.wait(f"/{prefix}/", range(n), listeners, 300)
            elapsed = time.perf_counter() - started
            burst = sorted(x for i in range(n) for x in got.get(i, []))
            missing = n * listeners - len(burst)
            rate = steady_rate(burst, elapsed)
            stream_rate = stream_stage(settings, burst_from, n * listeners)
            paced = {}
            start = n
            for per_second, count in ((50, 250), (500, 1000)):
                seqs = range(start, start + count)
                began = time.perf_counter()
                for k, i in enumerate(seqs):
                    hook.send(seq=i, t=time.time_ns())
                    publish.publisher().producer.poll(0)
                    pause = began + (k + 1) / per_second - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                publish.flush(60)
                got = receipts.wait(f"/{prefix}/", seqs, listeners, 120)
                lat = sorted(x for i in seqs for x in got.get(i, []))
                missing += count * listeners - len(lat)
                paced[per_second] = (pct(lat, 50), pct(lat, 99))
                start += count
            repeats = []
            if processes == 1 and listeners == 1:
                repeats.append(rate)
                for _ in range(4):
                    seqs = range(start, start + n)
                    began = time.perf_counter()
                    for i in seqs:
                        hook.send(seq=i, t=time.time_ns())
                    publish.flush(60)
                    got = receipts.wait(f"/{prefix}/", seqs, listeners, 300)
                    lat = sorted(x for i in seqs for x in got.get(i, []))
                    missing += n * listeners - len(lat)
                    repeats.append(steady_rate(lat, time.perf_counter() - began))
                    start += n
    finally:
        stop(*workers)
    burst_s = (pct(burst, 50) / 1000, pct(burst, 99) / 1000, (max(burst) if burst else 0) / 1000)
    return Row(name, rate, burst_s, stream_rate, paced, missing, repeats)


def steady_rate(latencies_ms: list[float], elapsed: float) -> float:
    """Receipts per second between the 10th and the 90th percentile of the burst's
    receipts (its events were all sent within a fraction of a second): the rate the
    pipeline keeps, apart from its start and its stragglers (the p99 and max show those)."""
    if len(latencies_ms) < 10:
        return len(latencies_ms) / elapsed
    low, high = latencies_ms[len(latencies_ms) // 10], latencies_ms[len(latencies_ms) * 9 // 10]
    return (len(latencies_ms) * 8 // 10) / max((high - low) / 1000, 1e-3)


def producer_cost(hook: object, settings: conf.Settings) -> None:
    from confluent_kafka import Producer

    from durian.kafka import confluent_config
    from producer import publish

    bare = Producer(confluent_config(settings, "producer"))
    sample = b"x" * 200
    count = 5000
    started = time.perf_counter()
    for _ in range(count):
        bare.produce(TopicNames(settings.topic_prefix).parked, sample)
        bare.poll(0)
    bare_us = (time.perf_counter() - started) / count * 1e6
    bare.flush(30)
    started = time.perf_counter()
    for i in range(count):
        hook.send(seq=-1, t=0, i=i)  # type: ignore[attr-defined]
    send_us = (time.perf_counter() - started) / count * 1e6
    publish.flush(60)
    print(f"producer cost   Hook.send() {send_us:.1f} µs/event; bare produce() {bare_us:.1f} µs")
    record("Hook.send µs", send_us)
    record("bare produce µs", bare_us)


def stream_stage(settings: conf.Settings, since: float, jobs_expected: int) -> float:
    """The stream workers' rate in the burst: jobs written per second, from the first
    event of the burst to its last job (read back from the topics)."""
    names = TopicNames(settings.topic_prefix)
    topics = read_since(settings, {names.events: since, names.deliveries: since})
    events = [r.timestamp for r in topics[names.events]
              if decode(r.value or b"", Event).data.get("seq", -1) >= 0]  # fmt: skip
    jobs = [r.timestamp for r in topics[names.deliveries]
            if decode(r.value or b"", DeliveryJob).event.data.get("seq", -1) >= 0]  # fmt: skip
    if not events or len(jobs) < jobs_expected:
        return float("nan")
    return len(jobs) / (max(jobs) - min(events))


if __name__ == "__main__":
    main()
