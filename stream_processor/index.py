"""The listener index: which listeners can match an event, without scanning them all.

Listeners are grouped by hook. Within a hook, each listener is filed under one key
that an event must have for the listener to match, the most selective it has:

* its ``Is`` conditions, all of them: one hash bucket per combination of values. An
  event looks up one bucket per combination of fields in use (``{"status": "paid",
  "currency": "EUR"}`` is one bucket, not every paid order);
* else its longest string pattern among
  - ``Startswith`` (``Endswith``): a bucket per (field, prefix) (or suffix), with the
    prefix lengths in use counted per field; an event looks at one bucket per
    distinct length, with its value's prefix (suffix) of that length;
  - ``Contains``: an Aho-Corasick automaton of the string patterns finds every one
    in a string value in one pass; a hash bucket per pattern finds the ones a list
    value holds as an element;
  - ``Like``: the longest literal every match of the expression contains (``order-``
    in ``^order-[0-9]+$``), found in the value by the same automaton as ``Contains``;
* else a ``Like`` with no literal of three characters or more: an RE2 set per field
  finds every such pattern that matches the value in one pass;
* else the scan list: listeners with no such condition (only ``Any``,
  ``Contains("")``, or nothing), looked at for every event.

Every candidate is then checked with the full matcher. So an event costs what the
listeners it could match cost, plus one lookup per distinct equality combination and
prefix length, plus one pass per automaton segment; not what the listeners it cannot
match cost.

Automata and RE2 sets are static structures, so they are kept in segments of at most
``AUTOMATON_SEGMENT`` (``SET_SEGMENT``) patterns. A new pattern goes into the newest
segment, which is rebuilt at the next event that needs it; a removed one leaves its
listener's bucket at once and its segment when a third of the segment is stale. One
change therefore rebuilds one segment, whatever the number of listeners.
"""

from __future__ import annotations

import contextlib
import gc
import re
import re._constants as sre  # type: ignore[import-not-found]  # no stubs; stable since 3.11
import re._parser as sre_parse  # type: ignore[import-not-found]
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import ahocorasick
import re2

from durian.match import Contains, Endswith, Is, Like, Startswith, deepmatch
from durian.reading import collector_paused
from durian.records import Event, ListenerSpec, remembering_compiled

__all__ = [
    "AUTOMATON_SEGMENT",
    "FREEZE_AFTER",
    "SET_SEGMENT",
    "ListenerIndex",
    "required_literal",
]

#: Patterns per Aho-Corasick automaton; building a full one takes ~30-45 ms.
AUTOMATON_SEGMENT = 100_000
#: Patterns per RE2 set; compiling one takes ~20-40 ms.
SET_SEGMENT = 5_000
#: A ``Like`` is looked up by its literal when the literal is at least this long.
MIN_LITERAL = 3

_MISSING = object()

Path = tuple[str, ...]
Kind = Literal["is", "prefix", "suffix", "contains", "like"]

_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 64 << 20


def _key(value: Any) -> Hashable:
    """A hashable form in which values are equal exactly when ``Is`` calls them equal:
    ``1 == 1.0`` at any depth, ``True != 1``, lists and objects by content."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)  # Python compares int and float exactly, and hashes alike
    if isinstance(value, list | tuple):
        return ("l", tuple(_key(item) for item in value))
    if isinstance(value, dict):
        return ("d", frozenset((k, _key(v)) for k, v in value.items()))
    key: Hashable = value  # str or None
    return key


def _lookup(data: Mapping[str, Any], path: Path) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _conditions(spec: Mapping[str, Any], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every ``(field path, matcher)`` of a compiled spec."""
    for name, condition in spec.items():
        if isinstance(condition, Mapping):
            yield from _conditions(condition, (*prefix, name))
        else:
            yield (*prefix, name), condition


def required_literal(pattern: str) -> str:
    """The longest string that every match of the RE2 ``pattern`` contains, or ``""``.

    The pattern is read with Python's parser, whose syntax RE2's follows. What the two
    could read differently (POSIX classes, ``\\Q..\\E``, case-insensitive parts) and
    what Python cannot read give ``""``: the pattern is then matched by an RE2 set.
    """
    if "[:" in pattern or "\\Q" in pattern:
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "possible nested set": read differently
            parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, Warning):
        return ""
    if parsed.state.flags & sre.SRE_FLAG_IGNORECASE:
        return ""
    runs: list[str] = []
    _literal_runs(parsed, runs)
    return max(runs, key=len, default="")


def _literal_runs(items: Iterable[tuple[Any, Any]], runs: list[str]) -> None:
    """Collect the runs of literal characters that a match of ``items`` must contain."""
    run: list[str] = []
    for op, arg in items:
        if op is sre.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            runs.append("".join(run))
            run = []
        if op is sre.SUBPATTERN:
            _group, add_flags, _del_flags, body = arg
            if not add_flags & sre.SRE_FLAG_IGNORECASE:
                _literal_runs(body, runs)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, _high, body = arg
            if low >= 1:
                _literal_runs(body, runs)
        # anything else (classes, alternatives, anchors, any character) ends a run
    if run:
        runs.append("".join(run))


Slot = tuple[Kind, Any, Any]
"""Where a listener is filed: ``(kind, field path(s), key)``, hashable."""


@dataclass(eq=False, slots=True)
class _Entry:
    listener: ListenerSpec
    spec: dict[str, Any]
    #: every slot it could be filed under, the most selective-looking first
    options: list[Slot]
    slot: Slot | None = None


def _slots(spec: Mapping[str, Any]) -> list[Slot]:
    """The slots a listener may be filed under (see the module docstring): its
    equality key, then its string patterns longest first, then one ``Like`` set."""
    equal: list[tuple[Path, Hashable]] = []
    patterns: list[tuple[int, Slot]] = []
    like: Slot | None = None
    for path, condition in _conditions(spec):
        if isinstance(condition, Is):
            equal.append((path, _key(condition.pattern)))
        elif isinstance(condition, Startswith | Endswith):
            kind: Kind = "prefix" if isinstance(condition, Startswith) else "suffix"
            patterns.append((len(condition.pattern), (kind, path, condition.pattern)))
        elif isinstance(condition, Contains) and condition.pattern != "":
            pattern = condition.pattern
            if isinstance(pattern, str):  # a substring, or an element of a list
                patterns.append((len(pattern), ("contains", path, (pattern, pattern))))
            else:  # an element: an exact hash lookup
                patterns.append((1 << 30, ("contains", path, (None, _key(pattern)))))
        elif isinstance(condition, Like):
            literal = required_literal(condition.pattern)
            if len(literal) >= MIN_LITERAL:
                patterns.append((len(literal), ("contains", path, (literal, None))))
            elif like is None:
                like = ("like", path, condition.pattern)
    options: list[Slot] = []
    if equal:
        equal.sort(key=lambda pair: pair[0])
        options.append(("is", tuple(p for p, _ in equal), tuple(k for _, k in equal)))
    patterns.sort(key=lambda pair: -pair[0])
    options.extend(slot for _, slot in patterns)
    if like is not None:
        options.append(like)
    return options


class _Segments:
    """Patterns matched in one pass over a value by static structures (an automaton, an
    RE2 set), kept in segments so that one change rebuilds one segment.

    ``owners`` maps each live pattern to its listeners; a segment may still hold a
    pattern that has none (it is skipped) until a third of the segment is stale.
    """

    def __init__(self, size: int, build: Callable[[list[Any]], Any], find: Callable[..., Any]):
        self.owners: dict[Any, dict[str, _Entry]] = {}
        self._size, self._build, self._find = size, build, find
        self._segments: list[_Segment] = []
        self._home: dict[Any, _Segment] = {}

    def __bool__(self) -> bool:
        return bool(self.owners)

    def add(self, pattern: Any, entry: _Entry) -> None:
        owners = self.owners.get(pattern)
        if owners is None:
            owners = self.owners[pattern] = {}
            if pattern in self._home:  # removed a moment ago, still in its segment
                self._home[pattern].stale -= 1
            else:
                segment = self._segments[-1] if self._segments else None
                if segment is None or len(segment.patterns) >= self._size:
                    segment = _Segment()
                    self._segments.append(segment)
                segment.patterns.append(pattern)
                segment.built = None
                self._home[pattern] = segment
        owners[entry.listener.id] = entry

    def discard(self, pattern: Any, listener_id: str) -> None:
        owners = self.owners.get(pattern)
        if owners is None or owners.pop(listener_id, None) is None or owners:
            return
        del self.owners[pattern]
        segment = self._home[pattern]
        segment.stale += 1
        if segment.stale * 3 > len(segment.patterns):
            self._compact(segment)

    def _compact(self, segment: _Segment) -> None:
        keep = [p for p in segment.patterns if p in self.owners]
        for pattern in segment.patterns:
            if pattern not in self.owners:
                del self._home[pattern]
        segment.patterns, segment.stale, segment.built = keep, 0, None
        if not keep:
            self._segments.remove(segment)

    def matching(self, value: Any) -> Iterator[dict[str, _Entry]]:
        """The owners of every pattern the value holds."""
        owners = self.owners
        for segment in self._segments:
            if segment.built is None:
                segment.built = self._build(segment.patterns)
            for pattern in self._find(segment, value):
                found = owners.get(pattern)
                if found:
                    yield found


@dataclass(eq=False, slots=True)
class _Segment:
    patterns: list[Any] = field(default_factory=list)
    stale: int = 0
    built: Any = None


def _automaton(words: list[str]) -> Any:
    automaton = ahocorasick.Automaton()
    for word in words:
        automaton.add_word(word, word)
    automaton.make_automaton()
    return automaton


def _words_in(segment: _Segment, value: str) -> Iterator[str]:
    for _end, word in segment.built.iter(value):
        yield word


_UNBUILDABLE = object()


def _pattern_set(patterns: list[str]) -> Any:
    compiled = re2.Set.SearchSet(_SET_OPTIONS)
    try:
        for pattern in patterns:
            compiled.Add(pattern)
        compiled.Compile()  # raises when the set outgrows its memory
    except re2.error:
        return _UNBUILDABLE
    return compiled


def _patterns_in(segment: _Segment, value: str) -> list[str]:
    if segment.built is _UNBUILDABLE:  # every pattern is a candidate
        return segment.patterns
    found = segment.built.Match(value)
    return [segment.patterns[i] for i in found] if found else []


class _Substrings:
    """The listeners filed under one field by a string they need in its value
    (``Contains`` and ``Like`` literals), and ``Contains`` of a list element."""

    def __init__(self) -> None:
        self.words = _Segments(AUTOMATON_SEGMENT, _automaton, _words_in)
        self.elements: dict[Hashable, dict[str, _Entry]] = defaultdict(dict)

    def __bool__(self) -> bool:
        return bool(self.words) or bool(self.elements)

    # A key is (word, element): the string to find in a string value, the element to
    # find in a list value; either may be None.

    def add(self, key: tuple[str | None, Hashable], entry: _Entry) -> None:
        word, element = key
        if word is not None:
            self.words.add(word, entry)
        if element is not None:
            self.elements[element][entry.listener.id] = entry

    def discard(self, key: tuple[str | None, Hashable], listener_id: str) -> None:
        word, element = key
        if word is not None:
            self.words.discard(word, listener_id)
        if element is not None:
            self.elements[element].pop(listener_id, None)
            if not self.elements[element]:
                del self.elements[element]

    def members(self, key: tuple[str | None, Hashable]) -> dict[str, _Entry]:
        word, element = key
        if word is not None:
            return self.words.owners.get(word, {})
        return self.elements.get(element, {})

    def matching(self, value: Any, found: list[_Entry]) -> None:
        if isinstance(value, str):
            if self.words:
                seen: dict[str, _Entry] = {}
                for owners in self.words.matching(value):
                    seen.update(owners)
                found.extend(seen.values())
        elif isinstance(value, list):
            seen = {}
            for item in value:
                seen.update(self.elements.get(_key(item), {}))
            found.extend(seen.values())


class _Likes:
    """The ``Like`` listeners filed under one field by their whole expression."""

    def __init__(self) -> None:
        self.patterns = _Segments(SET_SEGMENT, _pattern_set, _patterns_in)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def add(self, key: str, entry: _Entry) -> None:
        self.patterns.add(key, entry)

    def discard(self, key: str, listener_id: str) -> None:
        self.patterns.discard(key, listener_id)

    def members(self, key: str) -> dict[str, _Entry]:
        return self.patterns.owners.get(key, {})

    def matching(self, value: Any, found: list[_Entry]) -> None:
        if isinstance(value, str):
            for owners in self.patterns.matching(value):
                found.extend(owners.values())


#: A bucket this big makes its listeners look for a smaller slot (then twice its size).
REFILE_AT = 64
#: What a slot in an RE2 set counts as: its listeners are exact, but each pass costs.
_SET_LOAD = 32


@dataclass
class _HookIndex:
    scan: dict[str, _Entry] = field(default_factory=dict)
    #: (kind, path(s), key) -> listener id -> entry, for equality, prefixes and suffixes
    buckets: dict[Slot, dict[str, _Entry]] = field(default_factory=lambda: defaultdict(dict))
    #: the combinations of fields that listeners' equality keys use, and how many do
    equal_paths: Counter[tuple[Path, ...]] = field(default_factory=Counter)
    #: (kind, path) -> prefix (suffix) length -> how many listeners use it
    lengths: dict[tuple[Kind, Path], Counter[int]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    #: path -> the listeners filed under it by substring, by element or by expression
    by_value: dict[tuple[Kind, Path], _Substrings | _Likes] = field(default_factory=dict)
    #: slot -> the size at which its listeners next look for a smaller slot
    limits: dict[Slot, int] = field(default_factory=dict)
    refiling: bool = False

    def members(self, slot: Slot) -> dict[str, _Entry]:
        kind, path, key = slot
        if kind in ("contains", "like"):
            found = self.by_value.get((kind, path))
            return {} if found is None else found.members(key)
        return self.buckets.get(slot, {})

    def load(self, slot: Slot) -> int:
        """How many listeners an event with this slot's key would have to check."""
        return _SET_LOAD if slot[0] == "like" else len(self.members(slot))

    def add(self, entry: _Entry) -> None:
        """File a listener under the option with the fewest listeners now (the first
        on a tie); when that makes a bucket big, its listeners look again."""
        if not entry.options:
            entry.slot = None
            self.scan[entry.listener.id] = entry
            return
        slot = entry.options[0]
        if len(entry.options) > 1:
            slot = min(entry.options, key=self.load)
        self._file(entry, slot)
        if not self.refiling and self.load(slot) > self.limits.get(slot, REFILE_AT):
            self._refile(slot)

    def _refile(self, slot: Slot) -> None:
        """Move the listeners of a big slot that have a much smaller one."""
        self.refiling = True
        try:
            for entry in list(self.members(slot).values()):
                if len(entry.options) == 1:
                    continue
                best = min(entry.options, key=self.load)
                if self.load(best) * 2 < self.load(slot):
                    self.discard(entry)
                    self._file(entry, best)
        finally:
            self.refiling = False
        self.limits[slot] = max(REFILE_AT, 2 * self.load(slot))

    def _file(self, entry: _Entry, slot: Slot) -> None:
        entry.slot = slot
        kind, path, key = slot
        if kind in ("contains", "like"):
            found = self.by_value.get((kind, path))
            if found is None:
                found = self.by_value[(kind, path)] = (
                    _Substrings() if kind == "contains" else _Likes()
                )
            found.add(key, entry)
            return
        self.buckets[slot][entry.listener.id] = entry
        if kind == "is":
            self.equal_paths[path] += 1
        else:
            self.lengths[(kind, path)][len(key)] += 1

    def discard(self, entry: _Entry) -> None:
        slot = entry.slot
        if slot is None:
            self.scan.pop(entry.listener.id, None)
            return
        kind, path, key = slot
        if kind in ("contains", "like"):
            found = self.by_value[(kind, path)]
            found.discard(key, entry.listener.id)
            if not found:
                del self.by_value[(kind, path)]
        else:
            bucket = self.buckets[slot]
            bucket.pop(entry.listener.id, None)
            if not bucket:
                del self.buckets[slot]
            if kind == "is":
                _decrement(self.equal_paths, path)
            else:
                counts = self.lengths[(kind, path)]
                _decrement(counts, len(key))
                if not counts:
                    del self.lengths[(kind, path)]
        if slot in self.limits and not self.members(slot):
            del self.limits[slot]

    def candidates(self, data: Mapping[str, Any]) -> list[_Entry]:
        found = list(self.scan.values())
        buckets = self.buckets
        for paths in self.equal_paths:
            keys = []
            for path in paths:
                value = _lookup(data, path)
                if value is _MISSING:
                    break
                keys.append(_key(value))
            else:
                found.extend(buckets.get(("is", paths, tuple(keys)), {}).values())
        for (kind, path), counts in self.lengths.items():
            value = _lookup(data, path)
            if not isinstance(value, str):
                continue
            for length in counts:
                if length > len(value):
                    continue
                key = value[:length] if kind == "prefix" else value[len(value) - length :]
                found.extend(buckets.get((kind, path, key), {}).values())
        for (_kind, path), by_value in self.by_value.items():
            value = _lookup(data, path)
            if value is not _MISSING:
                by_value.matching(value, found)
        return found


def _decrement(counter: Counter[Any], key: Any) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


#: A load of at least this many listeners freezes what it made (see ``loading``).
FREEZE_AFTER = 1_000


class ListenerIndex:
    """Active listeners by hook and by one selective key each."""

    def __init__(self) -> None:
        self._hooks: dict[str, _HookIndex] = defaultdict(_HookIndex)
        self._entries: dict[str, tuple[str, _Entry]] = {}

    @contextlib.contextmanager
    def loading(self, count: int) -> Iterator[None]:
        """Put ``count`` listeners at once (a worker's start-up reads them all).

        Python's cycle collector would otherwise walk every listener made so far,
        again and again while they are made: more than half of the time a million
        take. It is paused while they load; a load of ``FREEZE_AFTER`` or more then
        freezes what exists (``gc.freeze``), so that later collections skip the
        listener table. Listeners hold no reference cycles; reference counting alone
        frees them when they are replaced or removed. Each listener's compiled match
        spec is reused from its validation (``durian.records.remembering_compiled``).
        """
        with collector_paused(), remembering_compiled():
            yield
            if count >= FREEZE_AFTER:
                gc.freeze()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, listener: ListenerSpec) -> None:
        """Add or replace a listener (inactive listeners are removed from the index)."""
        self.remove(listener.id)
        if not listener.active:
            return
        spec = listener.compiled_match()
        entry = _Entry(listener, spec, _slots(spec))
        self._hooks[listener.hook].add(entry)
        self._entries[listener.id] = (listener.hook, entry)

    def remove(self, listener_id: str) -> None:
        found = self._entries.pop(listener_id, None)
        if found is not None:
            hook, entry = found
            self._hooks[hook].discard(entry)

    def candidates(self, event: Event) -> list[_Entry]:
        """The listeners that may match ``event``: a few more than do, never fewer."""
        index = self._hooks.get(event.hook)
        return [] if index is None else index.candidates(event.data)

    def match(self, event: Event) -> list[ListenerSpec]:
        """The active listeners whose every condition holds for ``event``, ordered by id."""
        matched = [e.listener for e in self.candidates(event) if deepmatch(e.spec, event.data)]
        return sorted(matched, key=lambda listener: listener.id)
