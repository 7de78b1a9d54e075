from __future__ import annotations

import json
from typing import Any as AnyType

import pytest
import re2
from hypothesis import given
from hypothesis import strategies as st

from durian.exceptions import InvalidMatcher
from durian.match import (
    Any,
    Contains,
    Endswith,
    Is,
    Like,
    Startswith,
    compile_spec,
    deepmatch,
    equality_keys,
    spec_from_json,
    spec_to_json,
)

PERSON = {"name": "Joe", "address": {"city": "Oslo", "zip": "0150"}, "age": 42, "tags": ["a", "b"]}


def matches(spec: dict[str, AnyType], data: dict[str, AnyType] = PERSON) -> bool:
    return deepmatch(compile_spec(spec), data)


def test_seed_import_path_works() -> None:
    from durian.match import Startswith as SeedStartswith

    assert SeedStartswith is Startswith


def test_plain_value_means_is() -> None:
    assert matches({"name": "Joe"})
    assert not matches({"name": "Jo"})
    assert compile_spec({"name": "Joe"}) == {"name": Is("Joe")}


def test_empty_spec_matches_every_event() -> None:
    assert matches({})
    assert deepmatch(compile_spec(None), {})


def test_any_matches_even_a_missing_field() -> None:
    assert matches({"nickname": Any()})
    assert matches({"name": Any()})


def test_other_matchers_fail_on_a_missing_field() -> None:
    for matcher in (Is("x"), Startswith("x"), Endswith("x"), Contains("x"), Like("x")):
        assert not matches({"nickname": matcher}), matcher


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        (Startswith("J"), True),
        (Startswith("j"), False),
        (Endswith("oe"), True),
        (Endswith("J"), False),
        (Contains("o"), True),
        (Contains("x"), False),
        (Like("^J.e$"), True),
        (Like("o"), True),
        (Like("^o"), False),
    ],
)
def test_string_matchers(matcher: AnyType, expected: bool) -> None:
    assert matches({"name": matcher}) is expected


def test_string_matchers_do_not_match_non_strings() -> None:
    assert not matches({"age": Startswith("4")})
    assert not matches({"age": Like("42")})
    assert not matches({"age": Endswith("2")})


def test_contains_on_a_list_is_membership() -> None:
    assert matches({"tags": Contains("a")})
    assert not matches({"tags": Contains("c")})


def test_is_is_strict_about_json_types() -> None:
    assert matches({"age": 42})
    assert matches({"age": 42.0})
    assert not matches({"age": "42"})
    assert not deepmatch(compile_spec({"flag": 1}), {"flag": True})
    assert not deepmatch(compile_spec({"flag": True}), {"flag": 1})
    assert deepmatch(compile_spec({"flag": None}), {"flag": None})


def test_nested_fields() -> None:
    assert matches({"address": {"city": "Oslo"}})
    assert matches({"address": {"zip": Startswith("01")}})
    assert not matches({"address": {"city": "Bergen"}})
    assert not matches({"name": {"first": "Joe"}})  # not a mapping in the data
    assert matches({"nickname": {"first": Any()}})  # only Any: a missing parent is fine


def test_like_refuses_patterns_re2_cannot_run() -> None:
    with pytest.raises(InvalidMatcher, match="back-references"):
        Like(r"(a)\1")
    with pytest.raises(InvalidMatcher, match="not a valid RE2"):
        Like("(unclosed")
    with pytest.raises(InvalidMatcher, match="longer than"):
        Like("a" * 5000)


def test_like_is_linear_on_a_catastrophic_pattern() -> None:
    # (a+)+$ backtracks exponentially in re; RE2 answers at once.
    assert not Like("^(a+)+$").matches("a" * 50_000 + "!")


def test_string_matchers_refuse_non_string_patterns() -> None:
    with pytest.raises(InvalidMatcher, match="takes a string pattern"):
        Startswith(3)  # type: ignore[arg-type]


def test_compile_refuses_what_is_not_a_condition() -> None:
    with pytest.raises(InvalidMatcher, match="'when'"):
        compile_spec({"when": object()})
    with pytest.raises(InvalidMatcher, match="reserved"):
        compile_spec({"$name": "x"})


def test_json_form_round_trip_and_shape() -> None:
    spec = compile_spec(
        {"name": Startswith("J"), "address": {"city": "Oslo"}, "x": Any(), "r": Like("^a")}
    )
    data = spec_to_json(spec)
    assert data == {
        "name": {"$startswith": "J"},
        "address": {"city": {"$is": "Oslo"}},
        "x": {"$any": True},
        "r": {"$like": "^a"},
    }
    assert spec_from_json(json.loads(json.dumps(data))) == spec


def test_json_form_refuses_unknown_or_ambiguous_operators() -> None:
    with pytest.raises(InvalidMatcher, match=r"unknown operator '\$gt'"):
        spec_from_json({"age": {"$gt": 1}})
    with pytest.raises(InvalidMatcher, match="exactly one"):
        spec_from_json({"age": {"$is": 1, "$like": "x"}})
    with pytest.raises(InvalidMatcher, match="field 'name'"):
        spec_from_json({"name": {"$like": "("}})
    with pytest.raises(InvalidMatcher, match="JSON object"):
        spec_from_json(["name"])


def test_equality_keys_name_the_required_values() -> None:
    spec = compile_spec({"name": "Joe", "address": {"city": "Oslo"}, "age": Startswith("4")})
    assert dict(equality_keys(spec)) == {"name": "Joe", "address.city": "Oslo"}


# -- properties ---------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
text = st.text(max_size=12)
field_names = st.text(min_size=1, max_size=8).filter(lambda s: not s.startswith("$"))
safe_regex = st.sampled_from(["^a", "b$", "a.c", "[0-9]+", "(x|y)z", "", "\\d{2}"])
matchers = st.one_of(
    st.builds(Any),
    st.builds(Is, json_scalars),
    st.builds(Startswith, text),
    st.builds(Endswith, text),
    st.builds(Contains, json_scalars),
    st.builds(Like, safe_regex),
)
specs = st.recursive(
    st.dictionaries(field_names, matchers, max_size=4),
    lambda children: st.dictionaries(field_names, children | matchers, max_size=3),
    max_leaves=8,
)


@given(specs)
def test_json_round_trip_preserves_every_spec(spec: dict[str, AnyType]) -> None:
    as_json = json.loads(json.dumps(spec_to_json(spec)))
    assert spec_from_json(as_json) == spec


@given(specs, st.dictionaries(field_names, json_values, max_size=5))
def test_round_tripped_spec_decides_like_the_original(
    spec: dict[str, AnyType], data: dict[str, AnyType]
) -> None:
    again = spec_from_json(json.loads(json.dumps(spec_to_json(spec))))
    assert deepmatch(again, data) is deepmatch(spec, data)


@given(st.text(max_size=20), st.text(max_size=5))
def test_string_matchers_agree_with_python(value: str, pattern: str) -> None:
    assert Startswith(pattern).matches(value) is value.startswith(pattern)
    assert Endswith(pattern).matches(value) is value.endswith(pattern)
    assert Contains(pattern).matches(value) is (pattern in value)


@given(json_values)
def test_is_matches_its_own_value(value: AnyType) -> None:
    assert Is(value).matches(value)


@given(st.dictionaries(field_names, json_values, max_size=5))
def test_any_only_spec_matches_everything(data: dict[str, AnyType]) -> None:
    assert deepmatch({"anything": Any(), "else": {"deep": Any()}}, data) is True


def test_a_spec_nests_at_most_max_spec_depth_levels() -> None:
    from durian.match import MAX_SPEC_DEPTH, Startswith, spec_from_json

    def nested(levels: int, leaf: AnyType) -> AnyType:
        for _ in range(levels):
            leaf = {"a": leaf}
        return leaf

    deepest = spec_from_json(nested(MAX_SPEC_DEPTH, {"$startswith": "J"}))
    assert deepmatch(deepest, nested(MAX_SPEC_DEPTH, "Joe"))
    too_deep = f"nests at most {MAX_SPEC_DEPTH} levels"
    with pytest.raises(InvalidMatcher, match=too_deep):
        spec_from_json(nested(MAX_SPEC_DEPTH + 1, {"$startswith": "J"}))
    with pytest.raises(InvalidMatcher, match=too_deep):
        compile_spec(nested(MAX_SPEC_DEPTH + 1, Startswith("J")))
    # Far deeper than Python's recursion limit: refused all the same.
    with pytest.raises(InvalidMatcher, match=too_deep):
        spec_from_json(nested(5000, {"$startswith": "J"}))


@given(
    st.sampled_from(["^J", "n$", "é.", "^$", "(a|ñ)+b", "[^a]", "\\w+ü", "x*"]),
    st.text(alphabet="Jnaébñü x\n😀", max_size=8),
)
def test_like_decides_as_re2_search_does(pattern: str, text: str) -> None:
    assert Like(pattern).matches(text) == (re2.search(pattern, text) is not None)
