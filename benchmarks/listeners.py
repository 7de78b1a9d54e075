"""Listener table benchmark: write and read N listeners through the compacted topic.

Runs on a fresh embedded broker. Prints the time to write N listener records
(with the embedded one-record-per-batch setting and without it) and to read
the whole table back, against a baseline measured in the same run: a bare
confluent-kafka consumer reading the same topic without decoding anything.

    python benchmarks/listeners.py [N]
"""

from __future__ import annotations

import sys
import time
import uuid

import msgspec
from confluent_kafka import Consumer, KafkaError, TopicPartition

from durian import conf
from durian.embedded import EmbeddedBroker
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
    size = len(msgspec.json.encode(specs[0]))
    print(f"record size {size} bytes")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
