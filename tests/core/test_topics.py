from __future__ import annotations

import pytest

from durian.kafka import EMBEDDED_CONSUMER, confluent_config, faust_options
from durian.topics import TopicNames, format_delay, topic_specs
from tests.conftest import make_settings


def test_names_derive_from_one_prefix() -> None:
    names = TopicNames("acme")
    assert names.events == "acme.events"
    assert names.listeners == "acme.listeners"
    assert names.deliveries == "acme.deliveries"
    assert names.deliveries_retry(300) == "acme.deliveries.retry.5m"
    assert names.dead == "acme.deliveries.dead"
    assert names.attempts == "acme.attempts"
    assert names.group("deliver") == "acme.deliver"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (90, "90s"), (300, "5m"), (7200, "2h"), (86400, "1d"), (0.5, "500ms")],
)
def test_delay_names(seconds: float, text: str) -> None:
    assert format_delay(seconds) == text


def test_specs_cover_every_topic_with_one_tier_per_distinct_delay() -> None:
    specs = {spec.name: spec for spec in topic_specs(make_settings(TOPIC_PREFIX="t"))}
    retry = sorted(name for name in specs if ".retry." in name)
    assert retry == sorted(
        f"t.deliveries.retry.{d}" for d in ("5s", "5m", "30m", "2h", "5h", "10h")
    )
    assert specs["t.listeners"].config["cleanup.policy"] == "compact"
    assert specs["t.events"].partitions == 8
    assert {"t.deliveries", "t.deliveries.dead", "t.attempts", "t.parked"} <= specs.keys()


def test_embedded_client_settings_apply_only_to_the_embedded_broker() -> None:
    real = make_settings()
    embedded = make_settings(EMBEDDED=True)
    assert "session.timeout.ms" not in confluent_config(real, "consumer")
    assert (
        confluent_config(embedded, "consumer")["session.timeout.ms"]
        == EMBEDDED_CONSUMER["session.timeout.ms"]
    )
    # The stream workers write jobs, read only by confluent consumers: batched everywhere.
    assert "producer_max_batch_size" not in faust_options(embedded)
    assert "producer_max_batch_size" not in faust_options(real)


def test_client_config_carries_user_options_and_explicit_extras() -> None:
    settings = make_settings(
        KAFKA_OPTIONS={"security.protocol": "SASL_SSL"}, SESSION_TIMEOUT_MS=9000
    )
    config = confluent_config(settings, "consumer", **{"group.id": "g"})
    assert config["security.protocol"] == "SASL_SSL"
    assert config["session.timeout.ms"] == 9000
    assert config["group.id"] == "g"
    assert config["enable.auto.commit"] is False
    assert confluent_config(settings, "producer")["enable.idempotence"] is True
