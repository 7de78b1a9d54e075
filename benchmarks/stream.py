"""One stream worker alone: events in, delivery jobs out, nothing else running.

On the embedded broker: one ``durian-stream`` process, warmed up; then N events
are written to ``<prefix>.events`` at once (a confluent producer, a few tenths of a
second) and the worker's rate is read back from the topics: events per second from
the first event written to the last job written (record timestamps), and the jobs
per second that makes. Once with 1 listener per event, once with 10; a table of
1,000 listeners that match nothing sits beside them (matching is cheap, the index
finds the candidates: benchmarks/index.py).

    python benchmarks/stream.py [N]          (default N = 20000)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import profile, record, stop
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from durian import conf
from durian.embedded import EmbeddedBroker, spawn
from durian.kafka import confluent_config, produce
from durian.listener_store import ListenerStore
from durian.match import Is, spec_to_json
from durian.reading import read_since
from durian.records import DeliveryJob, Event, ListenerSpec, decode, encode, event_key, new_id
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames

BIN = Path(sys.executable).parent


def listeners(hook: str, matching: int, idle: int) -> list[ListenerSpec]:
    def one(n: int, match: dict[str, object]) -> ListenerSpec:
        return ListenerSpec(id=new_id("lst"), hook=hook, url=f"http://127.0.0.1:9/{n}",
                            secret=generate_secret(), match=spec_to_json(match))  # fmt: skip

    return [one(n, {}) for n in range(matching)] + [
        one(matching + n, {"kind": Is(f"other-{n}")}) for n in range(idle)
    ]


def events(hook: str, first: int, count: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC)
    out = []
    for seq in range(first, first + count):
        event = Event(id=new_id("evt"), hook=hook, occurred_at=now,
                      data={"seq": seq, "kind": "person", "name": f"Joe {seq}"},
                      object_id=str(seq))  # fmt: skip
        out.append((event_key(hook, str(seq)), encode(event)))
    return out


class Jobs:
    """Counts the records on the deliveries topic as they come, and the newest one's
    timestamp. (It reads them: tansu's high watermark lags the records it holds.)"""

    def __init__(self, settings: conf.Settings) -> None:
        names = TopicNames(settings.topic_prefix)
        self.consumer = Consumer(
            confluent_config(
                settings,
                "reader",
                **{"group.id": f"{settings.topic_prefix}.bench", "enable.partition.eof": False},
            )
        )
        self.consumer.assign([TopicPartition(names.deliveries, p, OFFSET_BEGINNING)
                              for p in range(settings.deliveries_partitions)])  # fmt: skip
        self.count = 0
        self.newest = 0.0

    def read(self, wait: float) -> int:
        for msg in self.consumer.consume(10_000, wait):
            if msg.error() is None:
                self.count += 1
                self.newest = max(self.newest, msg.timestamp()[1] / 1000)
        return self.count

    def close(self) -> None:
        self.consumer.close()


def missing(settings: conf.Settings, since: float, matching: int) -> list[str]:
    """The events of the burst with fewer than ``matching`` jobs, by location."""
    names = TopicNames(settings.topic_prefix)
    topics = read_since(settings, {names.events: since - 1, names.deliveries: since - 1})
    jobs: dict[str, int] = {}
    for stored in topics[names.deliveries]:
        event_id = decode(stored.value or b"", DeliveryJob).event.id
        jobs[event_id] = jobs.get(event_id, 0) + 1
    return [
        f"{stored.location} ({jobs.get(event.id, 0)} of {matching} jobs)"
        for stored in topics[names.events]
        if (event := decode(stored.value or b"", Event)).data["seq"] >= 0
        and jobs.get(event.id, 0) < matching
    ]


def scenario(base_env: dict[str, str], prefix: str, n: int, matching: int, work: Path) -> None:
    env = {**base_env, "DURIAN_TOPIC_PREFIX": prefix}
    settings = conf.load(environ=env)
    names = TopicNames(prefix)
    TopicAdmin(settings).ensure()
    with ListenerStore(settings) as store:
        store.put(*listeners("bench", matching, 1000))
    producer = Producer(confluent_config(settings, "producer"))  # as a web process writes
    jobs = Jobs(settings)
    worker = spawn([str(BIN / "durian-stream")], env=env, log=work / f"{prefix}-stream.log")
    try:
        deadline = time.monotonic() + 120
        seq = -1_000_000
        while jobs.read(0.5) < matching:  # warm up: the worker has joined, its table read
            if time.monotonic() > deadline:
                raise SystemExit(f"no job within 120 s; see {work}")
            for key, value in events("bench", seq, 1):
                produce(producer, names.events, value, key=key)
            producer.flush(10)
            seq += 1
        while jobs.read(1.0) < (1_000_000 + seq) * matching:  # every warm-up event's jobs
            if time.monotonic() > deadline:
                raise SystemExit(f"the warm-up's jobs did not all arrive within 120 s; see {work}")
        before = jobs.count
        batch = events("bench", 0, n)
        if os.environ.get("BENCH_PROFILE"):
            profile(worker.pid, prefix, 8)
            time.sleep(0.5)  # py-spy has attached
        started = time.time()
        for key, value in batch:
            produce(producer, names.events, value, key=key)
            producer.poll(0)
        producer.flush(60)
        written = time.time() - started
        deadline = time.monotonic() + 300
        while jobs.read(0.5) < before + n * matching:
            if time.monotonic() > deadline:
                lost = missing(settings, started, matching)
                raise SystemExit(f"{jobs.count - before} of {n * matching} jobs within 300 s; "
                                 f"events short of jobs: {lost[:10]}; see {work}")  # fmt: skip
        elapsed = jobs.newest - started
        print(f"{matching:2} listener(s) per event: {n / elapsed:8,.0f} events/s, "
              f"{n * matching / elapsed:8,.0f} jobs/s  ({n:,} events written in {written:.2f} s, "
              f"last job {elapsed:.2f} s after the first event)")  # fmt: skip
        record(f"stream events/s {matching}", n / elapsed)
    finally:
        stop(worker)
        jobs.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    work = Path(tempfile.mkdtemp(prefix="durian-bench-stream-"))
    with EmbeddedBroker() as broker:
        assert isinstance(broker, EmbeddedBroker)
        env = {
            **os.environ,
            "DURIAN_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DURIAN_EMBEDDED": "true",
            "DURIAN_ALLOW_PRIVATE_ADDRESSES": "true",
            "DURIAN_EVENTS_PARTITIONS": "4",
            "DURIAN_DELIVERIES_PARTITIONS": "4",
        }
        print(f"one durian-stream process, {n:,} events written at once, embedded broker")
        for index, matching in enumerate((1, 10)):
            scenario(env, f"stream{index}", n, matching, work)
    print(f"(logs in {work})")


if __name__ == "__main__":
    main()
