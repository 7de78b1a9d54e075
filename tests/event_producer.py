"""One web process's worth of events, for scale tests: ``python -m tests.event_producer N TAG``.

Publishes ``N`` ``person`` events through durian's own ``Publisher`` (the producer a
Django process uses), with settings from the ``DURIAN_*`` environment, as fast as it
can. Prints one line per event: its id and its name. Exits 1 if any was not published.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from durian import conf
from durian.records import Event, encode, event_key, new_id
from durian.topics import TopicNames
from producer.publish import Publisher


def main(count: int, tag: str) -> int:
    settings = conf.load()
    topic = TopicNames(settings.topic_prefix).events
    publisher = Publisher(settings)
    lines = []
    for n in range(count):
        name = ("Joe", "Ann")[n % 2]
        pk = f"{tag}-{n}"
        event = Event(
            id=new_id("evt"), hook="person", occurred_at=datetime.now(UTC),
            data={"name": name, "n": n}, object_id=pk,
        )  # fmt: skip
        publisher.publish(topic, event_key("person", pk), encode(event))
        lines.append(f"{event.id} {name}")
    publisher.flush(60)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
