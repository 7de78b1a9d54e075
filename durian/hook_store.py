"""The hooks topic: which hooks the sites declare, for tools that run without a site.

A Django site announces its registered hooks (name, fields, description) on the
compacted ``<prefix>.hooks`` topic, keyed by name: when it first publishes an
event, and on ``manage.py durian_hooks``. The CLI reads the topic to refuse a
listener for a hook no site declares (``durian listeners add --hook``; ``--force``
creates it anyway) and to list them (``durian hooks list``).
"""

from __future__ import annotations

import logging
import uuid

from confluent_kafka import Consumer, KafkaException

from durian.conf import Settings
from durian.exceptions import BrokerUnavailable, DecodeError
from durian.kafka import confluent_config, error_text
from durian.reading import GuardedConsumer, from_the_start, read_to_end
from durian.records import HookSpec, decode_message
from durian.topics import TopicNames

__all__ = ["read_hooks"]

logger = logging.getLogger(__name__)


def read_hooks(settings: Settings, timeout: float = 30.0) -> dict[str, HookSpec]:
    """Every hook a site declared, by name (an empty dict: none yet, or no topic)."""
    topic = TopicNames(settings.topic_prefix).hooks
    consumer = Consumer(
        confluent_config(
            settings, "reader", **{"group.id": f"{settings.topic_prefix}.reader.{uuid.uuid4().hex}"}
        )
    )
    try:
        start = from_the_start(consumer, topic, min(timeout, 15.0))
        if start is None:
            return {}
        hooks: dict[str, HookSpec] = {}
        reader = GuardedConsumer(consumer, settings, "hooks")
        for msg in read_to_end(reader, start[0], timeout):
            key = (msg.key() or b"").decode(errors="replace")
            if msg.value() is None:
                hooks.pop(key, None)
                continue
            try:
                hooks[key] = decode_message(msg, HookSpec)
            except DecodeError as exc:
                logger.warning("skipping an unreadable hook record: %s", exc)
        return hooks
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read {topic}: {error_text(exc)}") from None
    finally:
        consumer.close()
