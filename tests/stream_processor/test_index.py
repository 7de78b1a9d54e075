from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durian.match import Any as AnyValue
from durian.match import (
    Contains,
    Endswith,
    Like,
    Startswith,
    compile_spec,
    deepmatch,
    spec_from_json,
    spec_to_json,
)
from durian.records import Event, ListenerSpec
from durian.signing import generate_secret
from stream_processor import index as index_module
from stream_processor.index import ListenerIndex, required_literal

SECRET = generate_secret()


def listener(
    lid: str, match: dict[str, Any], hook: str = "person", active: bool = True
) -> ListenerSpec:
    return ListenerSpec(
        id=lid, hook=hook, url="https://e.com", secret=SECRET,
        match=spec_to_json(compile_spec(match)), active=active,
    )  # fmt: skip


def event(data: dict[str, Any], hook: str = "person") -> Event:
    return Event(id="e", hook=hook, occurred_at=datetime.now(UTC), data=data)


def test_matches_by_hook_and_conditions() -> None:
    index = ListenerIndex()
    index.put(listener("a", {"name": "Joe"}))
    index.put(listener("b", {}))
    index.put(listener("c", {"name": "Ann"}))
    index.put(listener("d", {"name": "Joe"}, hook="invoice"))
    assert [x.id for x in index.match(event({"name": "Joe"}))] == ["a", "b"]
    assert [x.id for x in index.match(event({"name": "Zed"}))] == ["b"]


def test_inactive_and_removed_listeners_do_not_match() -> None:
    index = ListenerIndex()
    index.put(listener("a", {}))
    index.put(listener("b", {}, active=False))
    assert [x.id for x in index.match(event({}))] == ["a"]
    index.remove("a")
    assert index.match(event({})) == [] and len(index) == 0


def test_updating_a_listener_moves_it_between_buckets() -> None:
    index = ListenerIndex()
    index.put(listener("a", {"name": "Joe"}))
    index.put(listener("a", {"name": "Ann"}))
    assert index.match(event({"name": "Joe"})) == []
    assert [x.id for x in index.match(event({"name": "Ann"}))] == ["a"]


def test_cost_grows_with_what_can_match_not_with_what_exists() -> None:
    index = ListenerIndex()
    for i in range(10_000):
        index.put(listener(f"l{i}", {"customer": i}))
    assert len(index.candidates(event({"customer": 42}))) == 1
    assert len(index.candidates(event({"customer": "nobody"}))) == 0


def test_nested_equality_and_number_forms() -> None:
    index = ListenerIndex()
    index.put(listener("a", {"address": {"city": "Oslo"}, "age": 42}))
    assert [x.id for x in index.match(event({"address": {"city": "Oslo"}, "age": 42.0}))] == ["a"]
    assert index.match(event({"address": {"city": "Oslo"}, "age": True})) == []


scalars = st.one_of(
    st.integers(0, 3), st.sampled_from(["Joe", "Ann", "J", 1.0, 2.5, 10**20]), st.booleans()
)
values = st.one_of(scalars, st.lists(scalars, max_size=2))
#: "a.b" is one field whose name holds a dot; "a" may hold a nested "b"
specs = st.dictionaries(st.sampled_from(["name", "age", "x", "a.b"]), values, max_size=3)
datas = st.dictionaries(
    st.sampled_from(["name", "age", "x", "y", "a.b", "a"]),
    st.one_of(values, st.dictionaries(st.just("b"), values)),
    max_size=4,
)


def _raw(spec: ListenerSpec) -> Any:
    return spec_from_json(spec.match)


def test_prefix_and_suffix_listeners_are_looked_up_not_scanned() -> None:
    index = ListenerIndex()
    for i in range(10_000):
        index.put(listener(f"p{i}", {"name": Startswith(f"{i:05d}")}))
        index.put(listener(f"s{i}", {"email": Endswith(f"@{i}.example")}))
    found = index.candidates(event({"name": "00042-Joe", "email": "joe@42.example"}))
    assert sorted(e.listener.id for e in found) == ["p42", "s42"]
    assert index.candidates(event({"name": 42, "email": None})) == []
    index.remove("p42")
    assert [x.id for x in index.match(event({"name": "00042-Joe"}))] == []


def test_a_listener_is_filed_under_its_most_selective_condition() -> None:
    index = ListenerIndex()
    index.put(listener("a", {"name": Startswith("J"), "city": "Oslo"}))
    index.put(listener("b", {"name": Startswith("J"), "nick": Endswith("nathan")}))
    assert [e.listener.id for e in index.candidates(event({"city": "Bergen", "name": "Jo"}))] == []
    assert [
        x.id for x in index.match(event({"name": "Jo", "nick": "Jonathan", "city": "Oslo"}))
    ] == ["a", "b"]


strings = st.text(alphabet="JoAn@.é", max_size=5)
conditions = st.one_of(
    values,
    strings.map(Startswith),
    strings.map(Endswith),
    st.just(AnyValue()),
    strings.map(Contains),
    st.sampled_from(["^J", "n$", "o"]).map(Like),
)
field_names = st.sampled_from(["name", "age", "x", "a.b"])
rich_specs = st.dictionaries(
    field_names,
    st.one_of(
        conditions, st.dictionaries(st.sampled_from(["city", "name"]), conditions, max_size=2)
    ),
    max_size=3,
)
leaf_values = st.one_of(values, strings, st.none(), st.lists(strings, max_size=2))
rich_datas = st.dictionaries(
    st.sampled_from(["name", "age", "x", "y", "a.b", "a"]),
    st.one_of(leaf_values, st.dictionaries(st.sampled_from(["city", "name"]), leaf_values)),
    max_size=4,
)


@settings(max_examples=400)
@given(st.lists(rich_specs, max_size=10), rich_datas)
def test_index_agrees_with_a_full_scan_for_every_matcher_kind(
    all_specs: list[dict[str, Any]], data: dict[str, Any]
) -> None:
    index, listeners = assert_agrees_with_a_full_scan(all_specs, data)
    for item in listeners[::2]:  # removals leave no trace behind
        index.remove(item.id)
    rest = [x.id for x in listeners[1::2] if deepmatch(compile_spec(_raw(x)), data)]
    assert [x.id for x in index.match(event(data))] == sorted(rest)


def test_like_listeners_are_found_in_one_pass_over_the_value() -> None:
    index = ListenerIndex()
    index.put(listener("j", {"name": Like("^J")}))
    index.put(listener("n", {"name": Like("n$")}))
    index.put(listener("x", {"name": Like("^x")}))
    assert sorted(e.listener.id for e in index.candidates(event({"name": "Jon"}))) == ["j", "n"]
    index.put(listener("x", {"name": Like("o")}))  # changed: the set is rebuilt
    index.remove("n")
    assert [x.id for x in index.match(event({"name": "Jon"}))] == ["j", "x"]
    assert index.candidates(event({"name": 7})) == []


pattern_specs = st.dictionaries(
    st.sampled_from(["name", "x"]),
    st.sampled_from(["^J", "n$", "o", "^$", "é", "J.n"]).map(Like),
    min_size=1,
    max_size=2,
)


def test_contains_listeners_are_found_by_substring_and_by_element() -> None:
    index = ListenerIndex()
    index.put(listener("vip", {"tags": Contains("vip")}))
    index.put(listener("num", {"tags": Contains(42)}))
    index.put(listener("sub", {"name": Contains("nath")}))
    index.put(listener("all", {"name": Contains("")}))  # every string: scanned
    found = index.candidates(event({"tags": ["a", "vip", 42.0], "name": "Jonathan"}))
    assert sorted(e.listener.id for e in found) == ["all", "num", "sub", "vip"]
    assert sorted(e.listener.id for e in index.candidates(event({"tags": "a vip"}))) == [
        "all", "vip"
    ]  # fmt: skip
    index.remove("vip")
    assert [x.id for x in index.match(event({"tags": "vip"}))] == []


contains_specs = st.dictionaries(
    st.sampled_from(["name", "x"]),
    st.one_of(strings, st.integers(0, 2), st.booleans()).map(Contains),
    min_size=1,
    max_size=2,
)


#: Listeners of one kind, and events to match them with.
ONE_KIND = {
    "is": (specs, datas),
    "like": (pattern_specs, rich_datas),
    "contains": (contains_specs, rich_datas),
}


@pytest.mark.parametrize("kind", sorted(ONE_KIND))
@settings(max_examples=200)
@given(draw=st.data())
def test_each_kinds_index_agrees_with_a_full_scan(kind: str, draw: st.DataObject) -> None:
    spec_strategy, data_strategy = ONE_KIND[kind]
    all_specs = draw.draw(st.lists(spec_strategy, max_size=8), label="specs")
    assert_agrees_with_a_full_scan(all_specs, draw.draw(data_strategy, label="data"))


def assert_agrees_with_a_full_scan(
    all_specs: list[dict[str, Any]], data: dict[str, Any]
) -> tuple[ListenerIndex, list[ListenerSpec]]:
    """Index the listeners and match ``data``: the same ids as checking every one."""
    index = ListenerIndex()
    listeners = [listener(f"l{i}", spec) for i, spec in enumerate(all_specs)]
    for item in listeners:
        index.put(item)
    expected = [x.id for x in listeners if deepmatch(compile_spec(_raw(x)), data)]
    assert [x.id for x in index.match(event(data))] == sorted(expected)
    return index, listeners


def test_every_equality_condition_makes_the_key() -> None:
    index = ListenerIndex()
    for i in range(1_000):
        index.put(listener(f"l{i}", {"status": "paid", "customer": i}))
    index.put(listener("dotted", {"a.b": 1}))  # a field whose name holds a dot
    index.put(listener("nested", {"a": {"b": 1}}))
    found = index.candidates(event({"status": "paid", "customer": 7}))
    assert [e.listener.id for e in found] == ["l7"]
    assert index.candidates(event({"status": "due", "customer": 7})) == []
    assert [x.id for x in index.match(event({"a.b": 1.0}))] == ["dotted"]
    assert [x.id for x in index.match(event({"a": {"b": 1}}))] == ["nested"]


def test_equal_values_share_a_key_at_any_depth() -> None:
    index = ListenerIndex()
    index.put(listener("list", {"x": [1, {"y": 2}]}))
    index.put(listener("big", {"x": 10**30}))
    assert [x.id for x in index.match(event({"x": [1.0, {"y": 2.0}]}))] == ["list"]
    assert index.match(event({"x": [True, {"y": 2}]})) == []
    assert [x.id for x in index.match(event({"x": 10**30}))] == ["big"]
    assert index.match(event({"x": 1e30})) == []  # 1e30 is not exactly 10**30


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("^order-[0-9]+$", "order-"),
        ("ab.cdef", "cdef"),
        ("(?:abc)+x", "abc"),
        ("(?:abc)*x", "x"),
        ("abc|defg", ""),
        ("(?i)abcd", ""),
        ("x(?i:abcd)", "x"),
        ("[[:alpha:]]abcd", ""),
        ("a{,3}bcd", "bcd"),
        ("é+ñandú", "ñandú"),
        ("\\.com$", ".com"),
    ],
)
def test_the_literal_a_like_pattern_needs(pattern: str, literal: str) -> None:
    assert required_literal(pattern) == literal


pieces = st.sampled_from(["Jo", "An", "n", "é", "on", "Joh", "ann", "."])
regexes = st.recursive(
    st.one_of(pieces, pieces.map(lambda p: f"[{p}]")),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{2}", "{0,1}"])).map(
            lambda p: f"(?:{p[0]}){p[1]}"
        ),
        inner.map(lambda p: f"(?i:{p})"),
        inner.map(lambda p: f"^{p}"),
        inner.map(lambda p: f"{p}$"),
    ),
    max_leaves=6,
)
texts = st.text(alphabet="JohnAnéo.", max_size=12)


@settings(max_examples=300)
@given(st.lists(regexes, max_size=6), texts)
def test_like_by_literal_agrees_with_the_expression(patterns: list[str], text: str) -> None:
    specs = [{"name": Like(p)} for p in patterns]
    assert_agrees_with_a_full_scan(specs, {"name": text})


def test_segments_are_rebuilt_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "AUTOMATON_SEGMENT", 8)
    monkeypatch.setattr(index_module, "SET_SEGMENT", 8)
    index = ListenerIndex()
    words = [f"w{i:03d}x" for i in range(100)]
    for i, word in enumerate(words):
        index.put(listener(f"c{i}", {"name": Contains(word)}))  # by automaton
        index.put(listener(f"r{i}", {"name": Like(f"^[st]{i:02d}[.]")}))  # by RE2 set
    text = "w007x w042x w099x"
    assert [x.id for x in index.match(event({"name": text}))] == ["c42", "c7", "c99"]
    assert [x.id for x in index.match(event({"name": "t07."}))] == ["r7"]
    for i in range(0, 100, 2):  # half gone: stale segments are compacted
        index.remove(f"c{i}")
        index.remove(f"r{i}")
    index.put(listener("c42", {"name": Contains("w042x")}))  # back, in the newest segment
    assert [x.id for x in index.match(event({"name": text}))] == ["c42", "c7", "c99"]
    assert [x.id for x in index.match(event({"name": "s07.x"}))] == ["r7"]
    assert index.match(event({"name": "s42."})) == []
    index.put(listener("c42", {"name": Contains("nope")}))
    assert [x.id for x in index.match(event({"name": text}))] == ["c7", "c99"]


def test_listeners_leave_a_crowded_bucket_for_a_smaller_one() -> None:
    index = ListenerIndex()
    for i in range(10_000):  # "paid" alone would make every paid order check them all
        index.put(listener(f"l{i}", {"status": "paid", "name": Startswith(f"{i:05d}")}))
    found = index.candidates(event({"status": "paid", "name": "00042-Joe"}))
    assert len(found) <= index_module.REFILE_AT
    assert [x.id for x in index.match(event({"status": "paid", "name": "00042-Joe"}))] == ["l42"]


@settings(max_examples=200)
@given(st.lists(rich_specs, max_size=30), st.lists(rich_datas, min_size=1, max_size=3))
def test_refiled_listeners_are_still_found(
    all_specs: list[dict[str, Any]], datas: list[dict[str, Any]]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_module, "REFILE_AT", 1)
        index = ListenerIndex()
        listeners = [listener(f"l{i:02d}", spec) for i, spec in enumerate(all_specs)]
        for item in listeners + listeners[::3]:  # some put twice
            index.put(item)
        for data in datas:
            expected = [x.id for x in listeners if deepmatch(compile_spec(_raw(x)), data)]
            assert [x.id for x in index.match(event(data))] == expected
