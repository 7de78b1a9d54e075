"""Creating and inspecting durian's topics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from durian.conf import Settings
from durian.exceptions import BrokerUnavailable, DurianError
from durian.kafka import confluent_config, error_text
from durian.topics import TopicSpec, topic_specs

__all__ = ["TopicAdmin", "TopicStatus"]


@dataclass(frozen=True)
class TopicStatus:
    name: str
    action: str  # "created" | "exists"
    partitions: int
    config: dict[str, str]
    warning: str = ""


class TopicAdmin:
    """Creates and inspects durian's topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin = AdminClient(confluent_config(settings, "admin"))

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Raise ``BrokerUnavailable`` unless the broker answers within ``timeout``."""
        try:
            self._admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"no Kafka broker answered at {self.settings.bootstrap_servers} within "
                f"{timeout:.0f} s ({error_text(exc)}); is it running? "
                "`make run` starts the embedded one"
            ) from None

    def ensure(
        self, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
    ) -> list[TopicStatus]:
        """Create every missing topic; leave existing ones as they are. Idempotent."""
        wanted = list(topic_specs(self.settings) if specs is None else specs)
        self.wait_ready(timeout)
        existing = self._admin.list_topics(timeout=timeout).topics
        new = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=spec.config,
            )
            for spec in wanted
            if spec.name not in existing
        ]
        created: set[str] = set()
        if new:
            for name, future in self._admin.create_topics(new, request_timeout=timeout).items():
                try:
                    future.result(timeout)
                    created.add(name)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise DurianError(
                            f"cannot create topic {name}: {error_text(exc)}"
                        ) from None
        metadata = self._admin.list_topics(timeout=timeout).topics
        configs = self._configs([spec.name for spec in wanted], timeout)
        statuses = []
        for spec in wanted:
            partitions = len(metadata[spec.name].partitions) if spec.name in metadata else 0
            config = configs.get(spec.name, {})
            warning = ""
            if partitions != spec.partitions:
                warning = f"has {partitions} partitions, settings ask for {spec.partitions}"
            for key, value in spec.config.items():
                if key == "cleanup.policy" and config.get(key, value) != value:
                    warning = f"{key} is {config.get(key)!r}, durian needs {value!r}"
            statuses.append(
                TopicStatus(
                    spec.name,
                    "created" if spec.name in created else "exists",
                    partitions,
                    config,
                    warning,
                )
            )
        return statuses

    def _configs(self, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
        out: dict[str, dict[str, str]] = {}
        for resource, future in self._admin.describe_configs(
            resources, request_timeout=timeout
        ).items():
            try:
                entries = future.result(timeout)
            except KafkaException:
                continue
            out[resource.name] = {
                key: entry.value
                for key, entry in entries.items()
                if key in ("cleanup.policy", "retention.ms") and entry.value is not None
            }
        return out
