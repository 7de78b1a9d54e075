"""Broker fidelity: two producers write to one partition at once, readers sit at its tail.

The embedded broker can hand a reader offset N+1 before N is stored (``durian.gap``).
A guarded reader must read every offset, in order; a plain reader beside it shows how
often the broker skipped one in the same run (it skips in most runs of this shape).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from durian import conf
from durian.kafka import confluent_config
from durian.reading import GuardedConsumer
from durian.topic_admin import TopicAdmin
from durian.topics import TopicSpec

pytestmark = pytest.mark.integration

PER_PRODUCER = 3000
ROUNDS = 4


def produce(bootstrap: str, topic: str, n: int, errors: list[str]) -> None:
    # One record per batch, as concurrent as it gets: the shape that opens holes.
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "batch.num.messages": 1}
    )
    for i in range(n):
        while True:
            try:
                producer.produce(topic, value=str(i).encode(), key=b"k", partition=1)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    if producer.flush(30):
        errors.append("records not acknowledged")


def tail(reader: GuardedConsumer | Consumer, topic: str, total: int) -> list[int]:
    """Offsets read from partition 1 from offset 0, until the last one (``total - 1``)."""
    consumer = reader.consumer if isinstance(reader, GuardedConsumer) else reader
    start = [TopicPartition(topic, 1, 0)]
    consumer.assign(start)
    if isinstance(reader, GuardedConsumer):
        reader.expect_assigned(start)
    offsets: list[int] = []
    deadline = time.monotonic() + 60
    while not (offsets and offsets[-1] >= total - 1) and time.monotonic() < deadline:
        for msg in reader.consume(500, 0.1):
            if msg.error() is None:
                offsets.append(msg.offset() or 0)
    return offsets


def skipped(offsets: list[int]) -> list[int]:
    seen = set(offsets)
    return [o for o in range(max(offsets, default=-1) + 1) if o not in seen]


def test_a_guarded_reader_reads_every_record_that_two_producers_write_at_once(
    kafka_bootstrap: str,
) -> None:
    settings = conf.load(
        environ={},
        overrides={"BOOTSTRAP_SERVERS": kafka_bootstrap, "EMBEDDED": True, "TOPIC_PREFIX": "gap"},
    )
    total = 2 * PER_PRODUCER
    plain_skipped = 0
    for _ in range(ROUNDS):
        topic = f"gap.{uuid.uuid4().hex[:8]}"
        TopicAdmin(settings).ensure([TopicSpec(topic, partitions=2, replication_factor=1)])
        config = confluent_config(settings, "consumer", **{"group.id": f"g{uuid.uuid4().hex}"})
        config["fetch.wait.max.ms"] = 10  # read right at the tail
        guarded = GuardedConsumer(Consumer(config), settings, "test")
        plain = Consumer({**config, "group.id": f"g{uuid.uuid4().hex}"})
        results: dict[str, list[int]] = {}
        errors: list[str] = []

        def read(
            name: str,
            reader: GuardedConsumer | Consumer,
            topic: str = topic,
            results: dict[str, list[int]] = results,
        ) -> None:
            results[name] = tail(reader, topic, total)

        readers = [
            threading.Thread(target=read, args=("guarded", guarded)),
            threading.Thread(target=read, args=("plain", plain)),
        ]
        writers = [
            threading.Thread(target=produce, args=(kafka_bootstrap, topic, PER_PRODUCER, errors))
            for _ in range(2)
        ]
        for thread in readers:
            thread.start()
        time.sleep(0.5)  # both readers at the tail before the first record
        for thread in writers:
            thread.start()
        for thread in writers + readers:
            thread.join(90)
        guarded.close()
        plain.close()
        assert not errors
        assert results["guarded"] == list(range(total)), skipped(results["guarded"])
        plain_skipped += len(skipped(results["plain"]))
        stats = guarded.guard.stats
        print(
            f"round: guarded reader read {total} of {total} in order "
            f"({stats.rewinds} re-reads, {stats.filled} holes filled); "
            f"a plain reader skipped {len(skipped(results['plain']))}"
        )
    print(f"plain readers skipped {plain_skipped} record(s) in {ROUNDS} rounds")
