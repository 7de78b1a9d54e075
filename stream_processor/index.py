"""The listener index: which listeners can match an event, without scanning them all.

Listeners are grouped by hook. Within a hook, a listener whose spec requires a
field to equal a value (``Is``) is filed under one such (field, value) pair; an
event only looks at the buckets its own field values point to, plus the
listeners with no equality condition. Every candidate is then checked with the
full matcher. So the cost of an event grows with the listeners that could
match it, not with how many listeners exist.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from durian.match import deepmatch, equality_keys, spec_from_json
from durian.records import Event, ListenerSpec

__all__ = ["ListenerIndex"]

_MISSING = object()


def _canonical(value: Any) -> bytes:
    """A hashable form in which values equal under ``Is`` are equal: 1 == 1.0, True != 1."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return msgspec.json.encode(value, order="sorted")


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


@dataclass
class _Entry:
    listener: ListenerSpec
    spec: dict[str, Any]
    slot: tuple[str, bytes] | None


@dataclass
class _HookIndex:
    scan: dict[str, _Entry] = field(default_factory=dict)
    buckets: dict[tuple[str, bytes], dict[str, _Entry]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    paths: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class ListenerIndex:
    """Active listeners by hook and by one equality condition each."""

    def __init__(self) -> None:
        self._hooks: dict[str, _HookIndex] = defaultdict(_HookIndex)
        self._entries: dict[str, tuple[str, _Entry]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, listener: ListenerSpec) -> None:
        """Add or replace a listener (inactive listeners are removed from the index)."""
        self.remove(listener.id)
        if not listener.active:
            return
        spec = spec_from_json(listener.match)
        slot = None
        for path, value in equality_keys(spec):
            slot = (path, _canonical(value))
            break
        entry = _Entry(listener, spec, slot)
        index = self._hooks[listener.hook]
        if slot is None:
            index.scan[listener.id] = entry
        else:
            index.buckets[slot][listener.id] = entry
            index.paths[slot[0]] += 1
        self._entries[listener.id] = (listener.hook, entry)

    def remove(self, listener_id: str) -> None:
        found = self._entries.pop(listener_id, None)
        if found is None:
            return
        hook, entry = found
        index = self._hooks[hook]
        if entry.slot is None:
            index.scan.pop(listener_id, None)
            return
        bucket = index.buckets[entry.slot]
        bucket.pop(listener_id, None)
        if not bucket:
            del index.buckets[entry.slot]
        index.paths[entry.slot[0]] -= 1
        if not index.paths[entry.slot[0]]:
            del index.paths[entry.slot[0]]

    def replace_all(self, listeners: Iterable[ListenerSpec]) -> None:
        self._hooks.clear()
        self._entries.clear()
        for listener in listeners:
            self.put(listener)

    def candidates(self, event: Event) -> list[_Entry]:
        index = self._hooks.get(event.hook)
        if index is None:
            return []
        found = list(index.scan.values())
        for path in index.paths:
            value = _lookup(event.data, path)
            if value is not _MISSING:
                found.extend(index.buckets.get((path, _canonical(value)), {}).values())
        return found

    def match(self, event: Event) -> list[ListenerSpec]:
        """The active listeners whose every condition holds for ``event``, ordered by id."""
        matched = [e.listener for e in self.candidates(event) if deepmatch(e.spec, event.data)]
        return sorted(matched, key=lambda listener: listener.id)
