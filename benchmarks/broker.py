"""What a fetch at the end of a partition costs the embedded broker as the partition grows.

tansu's memory storage keeps every batch of a partition and, measured here, spends
CPU on each fetch in proportion to the batches the partition holds, up to a point
where a fetch at the tail takes seconds. It honours neither ``retention.ms`` nor
DeleteRecords, so a long run on one stack slows down as its topics fill: the reason
repeated bursts on one embedded stack get slower each time (``benchmarks/pipeline.py``).

One partition; batches of 10 records of 300 bytes are written up to each size, then
a consumer reads the last 100 records 20 times. Prints the wall time of such a read
and the broker's CPU time for it (from /proc).

    python benchmarks/broker.py
"""

from __future__ import annotations

import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from durian.embedded import EmbeddedBroker

SIZES = (500, 1000, 2000, 3000, 4000, 5000)
READS = 20


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    with EmbeddedBroker() as broker:
        assert isinstance(broker, EmbeddedBroker) and broker.process is not None
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("growth", 1, 1)])["growth"].result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                             "batch.num.messages": 10, "log_level": 0})  # fmt: skip
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "growth",
                             "fetch.wait.max.ms": 10, "enable.partition.eof": True,
                             "log_level": 0})  # fmt: skip
        print("batches in the partition   read of the last 100 records   broker CPU per read")
        batches = 0
        try:
            for size in SIZES:
                while batches < size:
                    for _ in range(10):
                        producer.produce("growth", b"x" * 300)
                    producer.flush(10)
                    batches += 1
                _, high = consumer.get_watermark_offsets(TopicPartition("growth", 0), timeout=10)
                used = cpu_seconds(broker.process.pid)
                started = time.perf_counter()
                for _ in range(READS):
                    consumer.assign([TopicPartition("growth", 0, max(0, high - 100))])
                    while (msg := consumer.poll(5)) is not None and msg.error() is None:
                        pass
                took = (time.perf_counter() - started) / READS
                used = (cpu_seconds(broker.process.pid) - used) / READS
                print(f"{size:23,}   {took * 1000:25.1f} ms   {used * 1000:16.1f} ms", flush=True)
        finally:
            consumer.close()


if __name__ == "__main__":
    main()
