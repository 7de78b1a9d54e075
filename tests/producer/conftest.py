from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from durian import conf
from durian.topic_admin import TopicAdmin
from producer import publish
from producer.outbox import Relay


@pytest.fixture
def durian_site(kafka_bootstrap: str, topic_prefix: str) -> Iterator[conf.Settings]:
    """The Django site's DURIAN settings pointed at the session broker, topics created."""
    overrides = {
        "BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TOPIC_PREFIX": topic_prefix,
        "EMBEDDED": True,
        "EVENTS_PARTITIONS": 2,
        "DELIVERIES_PARTITIONS": 2,
    }
    settings = conf.load(environ={}, overrides=overrides)
    TopicAdmin(settings).ensure()
    with override_settings(DURIAN=overrides):
        yield settings
        publish.flush()


def relay_outbox(settings: conf.Settings) -> int:
    """Publish what waits in the outbox, as ``manage.py durian_relay --drain`` does."""
    return Relay(settings, poll_interval=0.05).run(drain=True)


def database_url() -> str:
    """The URL of the test database, for processes started by a test."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
