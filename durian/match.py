"""Field matchers: which events a listener wants.

A listener's *match spec* maps field names to conditions. A condition is a
matcher (``Startswith("J")``), a plain value (which means ``Is(value)``) or a
nested spec for a nested field::

    {"name": Startswith("J"), "address": {"city": "Oslo"}}

Semantics (the seed's, made precise):

* ``Any()`` matches anything, even a field that is not in the event at all.
* Every other matcher fails on a missing field; a nested spec under a missing
  (or non-object) field holds only when all its conditions are ``Any``.
* ``Is(v)`` is strict equality: ``Is(1)`` does not match ``True`` or ``1.0``.
* ``Startswith``/``Endswith``/``Like`` match strings only.
* ``Contains`` matches a substring of a string, or an element of a list.
* ``Like(regex)`` searches anywhere in the string (anchor with ``^``/``$``);
  it runs on RE2, a linear-time engine, so no pattern can stall a worker. A
  pattern RE2 cannot compile (back-references, look-around) is refused when
  the matcher is built, that is when the listener is created.

The JSON form of a spec (what the listeners topic stores) writes a matcher as
a one-key object whose key starts with ``$``::

    {"name": {"$startswith": "J"}, "address": {"city": {"$is": "Oslo"}}, "x": {"$any": true}}
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from typing import Any as AnyType
from typing import ClassVar, TypeAlias

import msgspec
import re2

from durian.exceptions import InvalidMatcher

__all__ = [
    "Any",
    "Contains",
    "Endswith",
    "Is",
    "Like",
    "MatchSpec",
    "Matcher",
    "Startswith",
    "compile_spec",
    "deepmatch",
    "equality_keys",
    "matcher_from_text",
    "parse_operand",
    "spec_from_json",
    "spec_to_json",
]

#: A spec as users write it: field -> matcher | plain value | nested spec.
MatchSpec: TypeAlias = Mapping[str, AnyType]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20
_MAX_PATTERN = 1000
_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
_NO_MATCH = (-1, -1)


class Matcher:
    """A condition on one field's value. Subclasses set ``op`` and ``matches``."""

    op: ClassVar[str]
    registry: ClassVar[dict[str, type[Matcher]]] = {}

    def __init_subclass__(cls, **kwargs: AnyType) -> None:
        super().__init_subclass__(**kwargs)
        Matcher.registry[cls.op] = cls

    def __init__(self, pattern: AnyType = None) -> None:
        self.pattern = pattern

    def matches(self, value: AnyType) -> bool:
        raise NotImplementedError("subclasses of Matcher must provide matches()")

    def __call__(self, value: AnyType) -> bool:
        return self.matches(value)

    def to_json(self) -> dict[str, AnyType]:
        return {f"${self.op}": self.pattern}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Matcher)
            and type(other) is type(self)
            and _same(self.pattern, other.pattern)
        )

    def __hash__(self) -> int:
        return hash((self.op, repr(self.pattern)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pattern!r})"


class Any(Matcher):
    """Matches anything, even a field the event does not carry."""

    op = "any"

    def __init__(self) -> None:
        super().__init__(True)

    def matches(self, value: AnyType) -> bool:
        return True

    def __repr__(self) -> str:
        return "Any()"


class Is(Matcher):
    """Strict equality: same value and same JSON type."""

    op = "is"

    def matches(self, value: AnyType) -> bool:
        return _same(value, self.pattern)


class _StringMatcher(Matcher):
    op = "_string"

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str):
            raise InvalidMatcher(
                f"{type(self).__name__} takes a string pattern, not {type(pattern).__name__}"
            )
        super().__init__(pattern)


class Startswith(_StringMatcher):
    """Matches a string that starts with the pattern."""

    op = "startswith"

    def matches(self, value: AnyType) -> bool:
        return isinstance(value, str) and value.startswith(self.pattern)


class Endswith(_StringMatcher):
    """Matches a string that ends with the pattern."""

    op = "endswith"

    def matches(self, value: AnyType) -> bool:
        return isinstance(value, str) and value.endswith(self.pattern)


class Contains(Matcher):
    """Matches a string holding the pattern, or a list holding it as an element."""

    op = "contains"

    def matches(self, value: AnyType) -> bool:
        if isinstance(value, str):
            return isinstance(self.pattern, str) and self.pattern in value
        if isinstance(value, list | tuple):
            return builtins.any(_same(item, self.pattern) for item in value)
        return False


class Like(_StringMatcher):
    """Matches a string in which the regular expression finds a match (RE2 syntax)."""

    op = "like"

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        if len(pattern) > _MAX_PATTERN:
            raise InvalidMatcher(f"Like pattern is longer than {_MAX_PATTERN} characters")
        try:
            self._regex = re2.compile(pattern, options=_RE2_OPTIONS)
        except re2.error as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise InvalidMatcher(
                f"Like({pattern!r}) is not a valid RE2 regular expression: {reason} "
                "(RE2 has no back-references or look-around)"
            ) from None

        # The compiled program's own search: the wrapper's ``search`` builds a match
        # object with every group's position, five times the cost of the search.
        self._program = getattr(self._regex, "_regexp", None) if _UNANCHORED else None

    def matches(self, value: AnyType) -> bool:
        if not isinstance(value, str):
            return False
        if self._program is None:
            return self._regex.search(value) is not None
        text = value.encode()
        return bool(self._program.Match(_UNANCHORED, text, 0, len(text))[0] != _NO_MATCH)


def _same(a: AnyType, b: AnyType) -> bool:
    """JSON-strict equality: ``True != 1`` and ``1 != 1.0`` is not what JSON users expect,
    so bools never equal numbers, while ints and floats compare by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b) and not (isinstance(a, list | tuple) and isinstance(b, list | tuple)):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


_MISSING = object()


#: How deep a match spec's fields may nest (``address.city`` is 2).
MAX_SPEC_DEPTH = 32


def _check_depth(path: str, depth: int) -> None:
    if depth >= MAX_SPEC_DEPTH:
        raise InvalidMatcher(
            f"field {path.rstrip('.')!r}...: a match spec nests at most {MAX_SPEC_DEPTH} levels"
        )


def compile_spec(spec: MatchSpec | None, *, _path: str = "", _depth: int = 0) -> dict[str, AnyType]:
    """Normalise a user spec: plain values become ``Is``, nested mappings recurse.

    Raises ``InvalidMatcher`` naming the field for anything that is not a
    matcher, a JSON value or a nested spec, or for nesting deeper than
    ``MAX_SPEC_DEPTH``.
    """
    if spec is None:
        return {}
    _check_depth(_path, _depth)
    if not isinstance(spec, Mapping):
        raise InvalidMatcher(f"a match spec is a mapping of field names, not {type(spec).__name__}")
    compiled: dict[str, AnyType] = {}
    for field, condition in spec.items():
        where = f"{_path}{field}"
        if not isinstance(field, str) or not field:
            raise InvalidMatcher(f"match field names are non-empty strings, got {field!r}")
        if field.startswith("$"):
            raise InvalidMatcher(
                f"field {where!r}: names starting with '$' are reserved for matchers"
            )
        if isinstance(condition, Matcher):
            compiled[field] = condition
        elif isinstance(condition, Mapping):
            compiled[field] = compile_spec(condition, _path=f"{where}.", _depth=_depth + 1)
        elif condition is None or isinstance(condition, str | int | float | bool | list | tuple):
            compiled[field] = Is(list(condition) if isinstance(condition, tuple) else condition)
        else:
            raise InvalidMatcher(
                f"field {where!r}: {condition!r} is neither a matcher "
                "(Any, Is, Startswith, Endswith, Contains, Like) nor a JSON value"
            )
    return compiled


def deepmatch(spec: Mapping[str, AnyType], data: Mapping[str, AnyType]) -> bool:
    """True when ``data`` satisfies every condition of a *compiled* spec."""
    for field, condition in spec.items():
        value = data.get(field, _MISSING)
        if isinstance(condition, Matcher):
            if isinstance(condition, Any):
                continue
            if value is _MISSING or not condition.matches(value):
                return False
        # A nested spec looks into a mapping; a missing or non-mapping value has no
        # fields, so only conditions that accept a missing field (Any) hold there.
        elif not deepmatch(condition, value if isinstance(value, Mapping) else {}):
            return False
    return True


def equality_keys(spec: Mapping[str, AnyType]) -> Iterator[tuple[str, AnyType]]:
    """The ``(dotted.field, value)`` pairs a compiled spec requires by ``Is``.

    Indexes use these: a listener that needs ``name == "Joe"`` can only match
    events whose name is "Joe".
    """
    for field, condition in spec.items():
        if isinstance(condition, Is):
            yield field, condition.pattern
        elif isinstance(condition, Mapping):
            for sub, value in equality_keys(condition):
                yield f"{field}.{sub}", value


def spec_to_json(spec: Mapping[str, AnyType]) -> dict[str, AnyType]:
    """The JSON form of a compiled spec (see the module docstring)."""
    out: dict[str, AnyType] = {}
    for field, condition in spec.items():
        out[field] = (
            condition.to_json() if isinstance(condition, Matcher) else spec_to_json(condition)
        )
    return out


def spec_from_json(data: AnyType, *, _path: str = "", _depth: int = 0) -> dict[str, AnyType]:
    """Parse the JSON form back into a compiled spec; refuses unknown operators."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidMatcher(f"a match spec is a JSON object, not {type(data).__name__}")
    _check_depth(_path, _depth)
    spec: dict[str, AnyType] = {}
    for field, condition in data.items():
        where = f"{_path}{field}"
        if isinstance(field, str) and field.startswith("$"):
            raise InvalidMatcher(
                f"{where!r}: an operator must be the value of a field, e.g. "
                '{"name": {"$startswith": "J"}}'
            )
        if isinstance(condition, Mapping) and any(
            isinstance(k, str) and k.startswith("$") for k in condition
        ):
            spec[field] = _matcher_from_json(where, condition)
        elif isinstance(condition, Mapping):
            spec[field] = spec_from_json(condition, _path=f"{where}.", _depth=_depth + 1)
        else:
            spec[field] = compile_spec({field: condition}, _path=_path, _depth=_depth)[field]
    return spec


def _matcher_from_json(where: str, condition: Mapping[str, AnyType]) -> Matcher:
    if len(condition) != 1:
        raise InvalidMatcher(
            f"field {where!r}: a matcher object has exactly one '$operator' key, "
            f"got {sorted(condition)}"
        )
    ((key, pattern),) = condition.items()
    op = key[1:]
    cls = Matcher.registry.get(op)
    if cls is None or op.startswith("_"):
        known = ", ".join(f"${name}" for name in _public_ops())
        raise InvalidMatcher(f"field {where!r}: unknown operator {key!r} (known: {known})")
    if cls is Any:
        return Any()
    try:
        return cls(pattern)
    except InvalidMatcher as exc:
        raise InvalidMatcher(f"field {where!r}: {exc}") from None


def parse_operand(text: str) -> AnyType:
    """What a typed value means as an operand of ``is`` or ``contains``: JSON when it
    reads as a scalar or a list (``42``, ``true``, ``null``, ``"42"``, ``[1, 2]``), else
    the text itself (``Joe``; an object too: nested fields get nested conditions)."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text
    return text if isinstance(value, dict) else value


def matcher_from_text(op: str, text: str) -> Matcher:
    """One condition as people type it, in the CLI's ``--match`` and the web form alike:
    ``op`` is any, is, startswith, endswith, contains or like; the operands of is and
    contains are read by ``parse_operand``, the others are text."""
    name = op.lower()
    cls = Matcher.registry.get(name)
    if cls is None or name.startswith("_"):
        raise InvalidMatcher(f"unknown condition {op!r} (known: {', '.join(_public_ops())})")
    if cls is Any:
        return Any()
    return cls(parse_operand(text) if name in ("is", "contains") else text)


def _public_ops() -> list[str]:
    return [op for op in Matcher.registry if not op.startswith("_")]
