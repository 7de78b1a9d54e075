"""The listener table: a Faust GlobalTable whose changelog is durian's listeners topic.

Every worker holds every listener (events are not partitioned by listener).
Records arrive from the compacted topic in recovery and then live; each batch
updates the table and the per-hook ``ListenerIndex``. A record that does not
decode is logged with its topic/partition/offset and treated as absent, never
a crash.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

import faust

from durian.exceptions import DecodeError
from durian.records import ListenerSpec, decode
from stream_processor.index import ListenerIndex

__all__ = ["ListenerTable"]

logger = logging.getLogger(__name__)


class ListenerTable(faust.GlobalTable):
    """listener id -> ListenerSpec, plus ``index`` for matching events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = ListenerIndex()
        self.invalid = 0

    def _changelog_topic_name(self) -> str:
        # Faust's partition assignor asks for this and would otherwise rebuild the
        # conventional "<app>-<table>-changelog" name, ignoring changelog_topic=...;
        # the lookup then fails inside the assignor and the group join hangs.
        name: str = self.changelog_topic.get_topic_name()
        return name

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        for event in events:  # one at a time, so that a bad record is named by its location
            message = event.message
            decode_here = functools.partial(
                self._decode, partition=message.partition, offset=message.offset
            )
            self.data.apply_changelog_batch([event], to_key=self._to_key, to_value=decode_here)
        for event in events:
            key = self._to_key(event.key)
            current = self.data.get(key)
            if current is None:
                self.index.remove(key)
            else:
                self.index.put(current)
        if events:
            logger.info("listener table: %d active listener(s)", len(self.index))

    def _to_key(self, k: Any) -> Any:
        return k.decode() if isinstance(k, bytes) else k

    def _to_value(self, v: Any) -> Any:
        return self._decode(v)

    def _decode(self, v: Any, partition: int | None = None, offset: int | None = None) -> Any:
        if v is None:
            return None
        if isinstance(v, ListenerSpec):
            return v
        try:
            return decode(
                v, ListenerSpec, topic=self.changelog_topic_name, partition=partition,
                offset=offset,
            )  # fmt: skip
        except DecodeError as exc:
            self.invalid += 1
            logger.error("unreadable listener record ignored: %s", exc)
            return None
