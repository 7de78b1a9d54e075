"""The listener index: which listeners can match an event, without scanning them all.

Listeners are grouped by hook. Within a hook, each listener is filed under one
condition that an event must meet for it to match, the most selective it has:

* an ``Is`` condition: a hash bucket per (field, value); an event looks at the
  buckets its own field values point to;
* else a ``Startswith`` (``Endswith``) condition: a bucket per (field, prefix) (or
  suffix), with the prefix lengths in use counted per field; an event looks at
  one bucket per distinct length, with its value's prefix (suffix) of that length;
* else a ``Contains`` condition (but ``Contains("")``): per field, an Aho-Corasick
  automaton of the string patterns finds every one in a string value in one pass,
  and a hash bucket per pattern finds the ones a list value holds as an element;
* else a ``Like`` condition: one RE2 set per field holding every such pattern; one
  pass over the event's value finds every pattern that matches it;
* else the scan list: listeners with no such condition (only ``Any``,
  ``Contains("")``, or nothing), looked at for every event.

The automaton and the RE2 set are rebuilt at the next event after a listener
filed there changes (a build per batch of changes, not per change).

Every candidate is then checked with the full matcher. So the cost of an event
grows with the listeners that could match it and with the distinct prefix
lengths in use, not with how many listeners exist. Adding, changing or removing a
listener touches one bucket.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import ahocorasick
import msgspec
import re2

from durian.match import Contains, Endswith, Is, Like, Startswith, deepmatch, spec_from_json
from durian.records import Event, ListenerSpec

__all__ = ["ListenerIndex"]

_MISSING = object()

Kind = Literal["is", "prefix", "suffix", "contains", "like"]

_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 256 << 20


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


def _conditions(spec: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted.field, matcher)`` of a compiled spec."""
    for name, condition in spec.items():
        if isinstance(condition, Mapping):
            yield from _conditions(condition, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", condition


def _slot(spec: Mapping[str, Any]) -> tuple[Kind, str, Any] | None:
    """The condition a listener is filed under: an ``Is``, else the longest prefix or
    suffix (fewest strings share it), else a ``Like``, else none."""
    best: tuple[Kind, str, Any] | None = None
    contains: tuple[Kind, str, Any] | None = None
    like: tuple[Kind, str, Any] | None = None
    for path, condition in _conditions(spec):
        if isinstance(condition, Is):
            return ("is", path, _canonical(condition.pattern))
        if isinstance(condition, Startswith | Endswith):
            kind: Kind = "prefix" if isinstance(condition, Startswith) else "suffix"
            if best is None or len(condition.pattern) > len(best[2]):
                best = (kind, path, condition.pattern)
        elif isinstance(condition, Contains) and condition.pattern != "" and contains is None:
            contains = ("contains", path, condition.pattern)
        elif isinstance(condition, Like) and like is None:
            like = ("like", path, condition.pattern)
    return best or contains or like


@dataclass
class _Entry:
    listener: ListenerSpec
    spec: dict[str, Any]
    slot: tuple[Kind, str, Any] | None


class _PatternSet:
    """The ``Like`` listeners filed under one field, matched in one pass by an RE2 set."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, _Entry]] = {}
        self._order: list[_Entry] = []
        self._set: Any = None
        self._dirty = False

    def add(self, pattern: str, entry: _Entry) -> None:
        self.entries[entry.listener.id] = (pattern, entry)
        self._dirty = True

    def discard(self, listener_id: str) -> None:
        if self.entries.pop(listener_id, None) is not None:
            self._dirty = True

    def matching(self, value: str) -> list[_Entry]:
        if self._dirty:
            self._build()
        if self._set is None:  # could not be built: every one is a candidate
            return self._order
        found = self._set.Match(value)
        return [self._order[i] for i in found] if found else []

    def _build(self) -> None:
        self._order = [entry for _, entry in self.entries.values()]
        self._set, self._dirty = None, False
        patterns = re2.Set.SearchSet(_SET_OPTIONS)
        try:
            for pattern, _ in self.entries.values():
                patterns.Add(pattern)
            patterns.Compile()  # raises when the set outgrows its memory
        except re2.error:
            return
        self._set = patterns


class _Contained:
    """The ``Contains`` listeners filed under one field: substrings of a string value by
    an Aho-Corasick automaton, elements of a list value by hash."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Any, _Entry]] = {}
        self._elements: dict[bytes, dict[str, _Entry]] = defaultdict(dict)
        self._automaton: Any = None
        self._dirty = False

    def add(self, pattern: Any, entry: _Entry) -> None:
        self.entries[entry.listener.id] = (pattern, entry)
        self._elements[_canonical(pattern)][entry.listener.id] = entry
        self._dirty = True

    def discard(self, listener_id: str) -> None:
        found = self.entries.pop(listener_id, None)
        if found is None:
            return
        key = _canonical(found[0])
        self._elements[key].pop(listener_id, None)
        if not self._elements[key]:
            del self._elements[key]
        self._dirty = True

    def matching(self, value: Any) -> list[_Entry]:
        if isinstance(value, list):
            found: dict[str, _Entry] = {}
            for item in value:
                found.update(self._elements.get(_canonical(item), {}))
            return list(found.values())
        if not isinstance(value, str):
            return []
        if self._dirty:
            self._build()
        if self._automaton is None:
            return []
        found = {}
        for _, listeners in self._automaton.iter(value):
            found.update(listeners)
        return list(found.values())

    def _build(self) -> None:
        words: dict[str, dict[str, _Entry]] = defaultdict(dict)
        for listener_id, (pattern, entry) in self.entries.items():
            if isinstance(pattern, str):
                words[pattern][listener_id] = entry
        self._dirty = False
        if not words:
            self._automaton = None
            return
        automaton = ahocorasick.Automaton()
        for word, listeners in words.items():
            automaton.add_word(word, listeners)
        automaton.make_automaton()
        self._automaton = automaton


@dataclass
class _HookIndex:
    scan: dict[str, _Entry] = field(default_factory=dict)
    #: (kind, path, key) -> listener id -> entry
    buckets: dict[tuple[Kind, str, Any], dict[str, _Entry]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    #: path -> how many listeners are filed under an ``Is`` on it
    equal_paths: Counter[str] = field(default_factory=Counter)
    #: (kind, path) -> prefix (suffix) length -> how many listeners use it
    lengths: dict[tuple[Kind, str], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    #: path -> the Contains listeners filed under it
    contained: dict[str, _Contained] = field(default_factory=lambda: defaultdict(_Contained))
    #: path -> the Like listeners filed under it
    likes: dict[str, _PatternSet] = field(default_factory=lambda: defaultdict(_PatternSet))

    def add(self, entry: _Entry) -> None:
        if entry.slot is None:
            self.scan[entry.listener.id] = entry
            return
        kind, path, key = entry.slot
        if kind in ("like", "contains"):
            self._sets(kind)[path].add(key, entry)
            return
        self.buckets[entry.slot][entry.listener.id] = entry
        if kind == "is":
            self.equal_paths[path] += 1
        else:
            self.lengths[(kind, path)][len(key)] += 1

    def discard(self, entry: _Entry) -> None:
        if entry.slot is None:
            self.scan.pop(entry.listener.id, None)
            return
        kind, path, key = entry.slot
        if kind in ("like", "contains"):
            sets = self._sets(kind)
            sets[path].discard(entry.listener.id)
            if not sets[path].entries:
                del sets[path]
            return
        bucket = self.buckets[entry.slot]
        bucket.pop(entry.listener.id, None)
        if not bucket:
            del self.buckets[entry.slot]
        if kind == "is":
            _decrement(self.equal_paths, path)
        else:
            counts = self.lengths[(kind, path)]
            _decrement(counts, len(key))
            if not counts:
                del self.lengths[(kind, path)]

    def _sets(self, kind: Kind) -> dict[str, Any]:
        """The per-field structures of the kinds matched in one pass over a value."""
        return self.likes if kind == "like" else self.contained

    def candidates(self, data: Mapping[str, Any]) -> list[_Entry]:
        found = list(self.scan.values())
        buckets = self.buckets
        for path in self.equal_paths:
            value = _lookup(data, path)
            if value is not _MISSING:
                found.extend(buckets.get(("is", path, _canonical(value)), {}).values())
        for (kind, path), counts in self.lengths.items():
            value = _lookup(data, path)
            if not isinstance(value, str):
                continue
            for length in counts:
                if length > len(value):
                    continue
                key = value[:length] if kind == "prefix" else value[len(value) - length :]
                found.extend(buckets.get((kind, path, key), {}).values())
        for path, contained in self.contained.items():
            value = _lookup(data, path)
            if value is not _MISSING:
                found.extend(contained.matching(value))
        for path, patterns in self.likes.items():
            value = _lookup(data, path)
            if isinstance(value, str):
                found.extend(patterns.matching(value))
        return found


def _decrement(counter: Counter[Any], key: Any) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


class ListenerIndex:
    """Active listeners by hook and by one selective condition each."""

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
        entry = _Entry(listener, spec, _slot(spec))
        self._hooks[listener.hook].add(entry)
        self._entries[listener.id] = (listener.hook, entry)

    def remove(self, listener_id: str) -> None:
        found = self._entries.pop(listener_id, None)
        if found is not None:
            hook, entry = found
            self._hooks[hook].discard(entry)

    def candidates(self, event: Event) -> list[_Entry]:
        index = self._hooks.get(event.hook)
        return [] if index is None else index.candidates(event.data)

    def match(self, event: Event) -> list[ListenerSpec]:
        """The active listeners whose every condition holds for ``event``, ordered by id."""
        matched = [e.listener for e in self.candidates(event) if deepmatch(e.spec, event.data)]
        return sorted(matched, key=lambda listener: listener.id)
