"""Listener table benchmark: write and read N listeners through the compacted topic.

Runs on a fresh embedded broker. Prints the time to write N listener records
(with the embedded one-record-per-batch setting and without it) and to read
the whole table back, against a baseline measured in the same run: a bare
confluent-kafka consumer reading the same topic without decoding anything.
Then a stream worker's start-up: from its start until its table holds all N
listeners and its index is built, and its memory then, beside a worker with
no listeners.

    python benchmarks/listeners.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
from common import stop
from confluent_kafka import Consumer, KafkaError, TopicPartition

from durian import conf
from durian.embedded import EmbeddedBroker, spawn
from durian.kafka import confluent_config
from durian.listener_store import ListenerStore
from durian.records import ListenerSpec
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames


def listeners(n: int) -> list[ListenerSpec]:
    secret = generate_secret()
    return [
        ListenerSpec(
            id=f"lst_{i:07d}",
            hook=f"hook{i % 50}",
            url=f"https://example.com/hooks/{i}",
            secret=secret,
            match={"name": {"$startswith": "J"}, "address": {"city": {"$is": "Oslo"}}},
        )
        for i in range(n)
    ]


def bare_read(settings: conf.Settings) -> int:
    topic = TopicNames(settings.topic_prefix).listeners
    consumer = Consumer(confluent_config(settings, "reader", **{"group.id": uuid.uuid4().hex}))
    low, _ = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, low)])
    count = 0
    try:
        while True:
            for msg in consumer.consume(10_000, 0.5):
                error = msg.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    return count
                count += 1
    finally:
        consumer.close()


def resident(pid: int) -> int:
    """A process's resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stream_startup(settings: conf.Settings, n: int, work: Path) -> tuple[float, int]:
    """Seconds from a stream worker's start until its index holds ``n`` listeners, and
    its resident memory then."""
    env = {
        **os.environ,
        "DURIAN_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DURIAN_TOPIC_PREFIX": settings.topic_prefix,
        "DURIAN_EMBEDDED": "true",
    }
    log = work / f"stream-{settings.topic_prefix}.log"
    done = f"listener table ready: {n} active listener(s)"
    started = time.perf_counter()
    command = [str(Path(sys.executable).parent / "durian-stream"), "-v"]
    worker = spawn(command, env=env, log=log)
    try:
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if done in text:
                return time.perf_counter() - started, resident(worker.pid)
            if worker.poll() is not None or time.perf_counter() - started > 300:
                raise SystemExit(f"the stream worker did not load {n:,} listeners; see {log}")
            time.sleep(0.1)
    finally:
        stop(worker)


def run(n: int) -> None:
    specs = listeners(n)
    with EmbeddedBroker() as broker:
        assert isinstance(broker, EmbeddedBroker)
        for embedded in (False, True):
            settings = conf.load(
                environ={},
                overrides={
                    "BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                    "TOPIC_PREFIX": f"bench{int(embedded)}",
                    "EMBEDDED": embedded,
                },
            )
            TopicAdmin(settings).ensure()
            label = "embedded (last record alone)" if embedded else "batched"
            with ListenerStore(settings) as store:
                started = time.perf_counter()
                store.put(*specs, timeout=300)
                wrote = time.perf_counter() - started
                print(f"write {n:,} listeners, {label:32} {wrote:6.2f} s  {n / wrote:9,.0f}/s")
            started = time.perf_counter()
            raw = bare_read(settings)
            bare = time.perf_counter() - started
            started = time.perf_counter()
            table = ListenerStore(settings).read()
            read = time.perf_counter() - started
            assert raw == n and len(table.listeners) == n, (raw, len(table.listeners))
            print(f"read  {n:,} records, bare consumer (baseline)       {bare:6.2f} s")
            print(
                f"read  {n:,} listeners, decoded + validated table      {read:6.2f} s"
                f"  ({read / bare:.1f}x baseline)"
            )
        work = Path(tempfile.mkdtemp(prefix="durian-bench-"))
        empty = conf.load(
            environ={},
            overrides={"BOOTSTRAP_SERVERS": broker.bootstrap_servers, "TOPIC_PREFIX": "empty"},
        )
        TopicAdmin(empty).ensure()
        base_time, base_memory = stream_startup(empty, 0, work)
        took, memory = stream_startup(settings, n, work)
        print(
            f"stream worker start-up, no listeners                  {base_time:6.2f} s"
            f"  {base_memory / 2**20:7,.0f} MiB"
        )
        print(
            f"stream worker start-up, {n:,} listeners read, indexed {took:6.2f} s"
            f"  {memory / 2**20:7,.0f} MiB"
            f"  ({(memory - base_memory) / n * 1e6 / 2**30:.2f} GiB per million listeners)"
        )
    size = len(msgspec.json.encode(specs[0]))
    print(f"record size {size} bytes")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
