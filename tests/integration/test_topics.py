from __future__ import annotations

from durian import conf
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames, topic_specs


def test_topics_create_is_idempotent_and_compacts_the_listener_table(
    settings: conf.Settings,
) -> None:
    admin = TopicAdmin(settings)
    first = {status.name: status for status in admin.ensure()}
    second = {status.name: status for status in admin.ensure()}
    wanted = {spec.name for spec in topic_specs(settings)}
    assert first.keys() == second.keys() == wanted
    assert {s.action for s in first.values()} == {"created"}
    assert {s.action for s in second.values()} == {"exists"}
    names = TopicNames(settings.topic_prefix)
    assert second[names.listeners].config["cleanup.policy"] == "compact"
    assert second[names.listeners].partitions == settings.listeners_partitions
    assert second[names.events].partitions == settings.events_partitions
    assert not any(s.warning for s in second.values())


def test_existing_topic_with_other_partitions_is_reported(settings: conf.Settings) -> None:
    admin = TopicAdmin(settings)
    admin.ensure()
    more = conf.load(environ={}, overrides={**_as_overrides(settings), "EVENTS_PARTITIONS": 5})
    statuses = {s.name: s for s in TopicAdmin(more).ensure()}
    warning = statuses[TopicNames(settings.topic_prefix).events].warning
    assert warning == "has 2 partitions, settings ask for 5"


def _as_overrides(settings: conf.Settings) -> dict[str, object]:
    return {
        "BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "EMBEDDED": settings.embedded,
        "EVENTS_PARTITIONS": settings.events_partitions,
        "DELIVERIES_PARTITIONS": settings.deliveries_partitions,
        "ATTEMPTS_PARTITIONS": settings.attempts_partitions,
    }
