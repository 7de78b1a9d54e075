"""The stream worker's job writer: a flush (before each commit) waits for what was queued
before it, and a record the broker never takes makes it raise, so no commit passes it."""

from __future__ import annotations

import asyncio

import pytest

from durian import conf
from durian.embedded import free_port
from durian.exceptions import PublishError
from stream_processor.writer import JobWriter
from tests.conftest import make_settings, read_topic


def test_a_flush_returns_once_the_broker_has_every_record_queued_before_it(
    topics: conf.Settings,
) -> None:
    refused: list[PublishError] = []
    writer = JobWriter(topics, on_failure=refused.append)
    topic = f"{topics.topic_prefix}.deliveries"

    async def write_and_flush() -> None:
        for n in range(500):
            writer.write(topic, f"k{n}".encode(), f"v{n}".encode())
        await writer.flush()

    asyncio.run(write_and_flush())
    assert not refused
    assert sorted(value for _, value in read_topic(topics, topic)) == sorted(
        f"v{n}".encode() for n in range(500)
    )


def test_a_flush_waits_for_its_own_records_not_for_those_written_while_it_waits(
    topics: conf.Settings,
) -> None:
    """Under steady load the writer is never empty; a flush that waited for an empty writer
    would hold every commit back for as long as the load lasts."""
    writer = JobWriter(topics, on_failure=lambda error: None)
    topic = f"{topics.topic_prefix}.deliveries"

    async def flush_under_load() -> int:
        writer.write(topic, b"first", b"first")
        stop = asyncio.Event()

        async def keep_writing() -> None:
            while not stop.is_set():
                writer.write(topic, b"more", b"more")
                await asyncio.sleep(0)

        load = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.05)
        await asyncio.wait_for(writer.flush(), 10)
        in_flight_after = sum(epoch.in_flight for epoch in [writer._epoch, *writer._sealed])
        stop.set()
        await load
        await writer.flush()
        return in_flight_after

    assert asyncio.run(flush_under_load()) > 0  # records written meanwhile were still going


def test_a_record_the_broker_never_takes_fails_the_flush_and_every_later_write() -> None:
    """No broker at the address, and a message timeout of 0.5 s: librdkafka gives the
    records up, and the writer says so instead of letting a commit pass them."""
    settings = make_settings(
        BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        KAFKA_OPTIONS={"message.timeout.ms": "500", "log_level": "0"},
    )
    refused: list[PublishError] = []
    writer = JobWriter(settings, on_failure=refused.append)

    async def write_and_flush() -> None:
        writer.write("durian.deliveries", b"k", b"job")
        writer.write("durian.deliveries", b"k", b"another")
        await asyncio.wait_for(writer.flush(), 30)

    with pytest.raises(PublishError, match=r"durian\.deliveries"):
        asyncio.run(write_and_flush())
    assert len(refused) == 1  # said once, however many records it gives up
    with pytest.raises(PublishError):
        writer.write("durian.deliveries", b"k", b"after")
