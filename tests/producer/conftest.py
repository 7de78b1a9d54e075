from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings

from durian import conf
from durian.topic_admin import TopicAdmin
from producer import publish


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
