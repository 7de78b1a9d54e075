from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from durian.match import compile_spec, deepmatch, spec_to_json
from durian.records import Event, ListenerSpec
from durian.signing import generate_secret
from stream_processor.index import ListenerIndex

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


values = st.one_of(st.integers(0, 3), st.sampled_from(["Joe", "Ann", "J"]), st.booleans())
specs = st.dictionaries(st.sampled_from(["name", "age", "x"]), values, max_size=2)
datas = st.dictionaries(st.sampled_from(["name", "age", "x", "y"]), values, max_size=4)


@settings(max_examples=200)
@given(st.lists(specs, max_size=8), datas)
def test_index_agrees_with_a_full_scan(
    all_specs: list[dict[str, Any]], data: dict[str, Any]
) -> None:
    index = ListenerIndex()
    listeners = [listener(f"l{i}", spec) for i, spec in enumerate(all_specs)]
    for item in listeners:
        index.put(item)
    expected = [x.id for x in listeners if deepmatch(compile_spec(_raw(x)), data)]
    assert [x.id for x in index.match(event(data))] == sorted(expected)


def _raw(spec: ListenerSpec) -> Any:
    from durian.match import spec_from_json

    return spec_from_json(spec.match)
