"""`durian listeners ...` against the real broker: records and tombstones on the compacted topic."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest
from click.testing import Result
from confluent_kafka import Consumer, Producer, TopicPartition

from durian import conf
from durian.kafka import confluent_config
from durian.listener_store import ListenerStore
from durian.records import ListenerSpec, decode, encode
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames
from tests.conftest import durian_cli as durian
from tests.conftest import read_topic


def raw_records(settings: conf.Settings) -> list[tuple[str, bytes | None]]:
    """Every (key, value) on the listeners topic, in order, tombstones included."""
    records = read_topic(settings, TopicNames(settings.topic_prefix).listeners)
    return [(key.decode() if key else "", value) for key, value in records]


def added_id(result: Result) -> str:
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("created ")
    return first.split()[1]


def test_add_list_rm_round_trips_through_the_compacted_topic(topics: conf.Settings) -> None:
    lid = added_id(
        durian(topics, "listeners", "add", "--hook", "person", "--url", "https://example.com/j",
               "--match", "name=startswith:J")
    )  # fmt: skip
    listed = durian(topics, "listeners", "list", "--json")
    rows = [msgspec.json.decode(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["hook"], r["url"], r["match"]) for r in rows] == [
        (lid, "person", "https://example.com/j", {"name": {"$startswith": "J"}})
    ]
    assert "secret" not in rows[0]

    removed = durian(topics, "listeners", "rm", lid)
    assert removed.exit_code == 0 and f"deleted {lid}" in removed.stdout
    assert durian(topics, "listeners", "list", "--json").stdout == ""

    records = raw_records(topics)
    assert [key for key, _ in records] == [lid, lid]
    assert records[0][1] is not None and decode(records[0][1], ListenerSpec).id == lid
    assert records[1][1] is None, "rm must write a tombstone"


def test_add_prints_the_secret_once_and_show_never_does(topics: conf.Settings) -> None:
    result = durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/")
    lid = added_id(result)
    secret = result.stdout.splitlines()[1].split()[1]
    assert secret.startswith("whsec_")
    stored = ListenerStore(topics).get(lid)
    assert stored.secret == secret
    shown = durian(topics, "listeners", "show", lid)
    assert shown.exit_code == 0 and lid in shown.stdout
    assert secret not in shown.stdout
    assert "(every event)" in shown.stdout


def test_header_values_are_never_listed(topics: conf.Settings) -> None:
    added = durian(
        topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/",
        "--header", "Authorization:Bearer hunter2",
    )  # fmt: skip
    lid = added_id(added)
    for args in (["list", "--json"], ["show", lid], ["list"]):
        shown = durian(topics, "listeners", *args)
        assert shown.exit_code == 0 and "hunter2" not in shown.stdout, args
        assert "Authorization" in shown.stdout or args == ["list"]
    refused = durian(
        topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/",
        "--header", "Webhook-Id:forged",
    )  # fmt: skip
    assert refused.exit_code != 0 and "set by durian itself" in refused.output


def test_nested_and_every_kind_of_condition_from_the_command_line(topics: conf.Settings) -> None:
    lid = added_id(
        durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/",
               "--match", "name=Joe", "--match", "age=is:42", "--match", "nick=any",
               "--match", "address.city=endswith:lo", "--match", "tags=contains:vip",
               "--match", "email=like:@example\\.com$", "--match", "zip=startswith:01")
    )  # fmt: skip
    assert ListenerStore(topics).get(lid).match == {
        "name": {"$is": "Joe"},
        "age": {"$is": 42},
        "nick": {"$any": True},
        "address": {"city": {"$endswith": "lo"}},
        "tags": {"$contains": "vip"},
        "email": {"$like": "@example\\.com$"},
        "zip": {"$startswith": "01"},
    }


def test_update_changes_only_what_is_given(topics: conf.Settings) -> None:
    lid = added_id(
        durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/a",
               "--match", "name=Joe", "--description", "team a")
    )  # fmt: skip
    before = ListenerStore(topics).get(lid)
    result = durian(topics, "listeners", "update", lid, "--url", "https://e.com/b", "--inactive")
    assert result.exit_code == 0, result.output
    after = ListenerStore(topics).get(lid)
    assert (after.url, after.active) == ("https://e.com/b", False)
    assert (after.match, after.description, after.secret) == (
        before.match, before.description, before.secret,
    )  # fmt: skip
    durian(topics, "listeners", "update", lid, "--match-all")
    assert ListenerStore(topics).get(lid).match == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "--hook", "person", "--url", "ftp://e.com"], "must start with http:// or https://"),
        (["add", "--hook", "person", "--url", "https://e.com", "--match", "n=like:(a)\\1"],
         "not a valid RE2 regular expression"),
        (["add", "--hook", "person", "--url", "https://e.com", "--match-json", '{"n": {"$gt": 1}}'],
         "unknown operator '$gt'"),
        (["add", "--hook", "person", "--url", "https://e.com", "--match", "nofield"],
         "write FIELD=CONDITION"),
        (["add", "--hook", "bad hook", "--url", "https://e.com"], "hook name 'bad hook'"),
        (["add", "--hook", "person", "--url", "http://10.0.0.1/hook"],
         "10.0.0.1 is a non-public address"),
        (["add", "--hook", "person", "--url", "http://[::1]:8080/hook"],
         "::1 is a non-public address"),
        (["add", "--hook", "person", "--url", "http://127\u30020\u30020\u30021/"],
         "uses a non-ASCII dot"),
        (["add", "--hook", "person", "--url", "http://2130706433/"], "write it as 127.0.0.1"),
        (["rm", "lst_missing"], "no listener with id 'lst_missing'; nothing was deleted"),
        (["update", "lst_missing", "--url", "https://e.com"], "no listener with id 'lst_missing'"),
        (["show", "lst_missing"], "no listener with id 'lst_missing'"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_clear_error_and_writes_nothing(
    topics: conf.Settings, args: list[str], message: str
) -> None:
    keep = added_id(
        durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com")
    )
    before = raw_records(topics)
    result = durian(topics, "listeners", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert raw_records(topics) == before
    assert keep in ListenerStore(topics).read().listeners


def test_update_with_an_invalid_regex_leaves_the_listener_as_it_was(topics: conf.Settings) -> None:
    lid = added_id(durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com"))
    before = raw_records(topics)
    result = durian(topics, "listeners", "update", lid, "--match", "name=like:[")
    assert result.exit_code == 1 and "not a valid RE2" in result.output
    assert raw_records(topics) == before


def test_rm_of_several_ids_with_one_unknown_deletes_none(topics: conf.Settings) -> None:
    lid = added_id(durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com"))
    result = durian(topics, "listeners", "rm", lid, "lst_nope")
    assert result.exit_code == 1
    assert lid in ListenerStore(topics).read().listeners


def test_export_then_import_restores_every_listener_with_its_secret(
    topics: conf.Settings, tmp_path: Path, kafka_bootstrap: str
) -> None:
    ids = {
        added_id(durian(topics, "listeners", "add", "--hook", f"h{i}", "--url", f"https://e.com/{i}",
                        "--match", f"n=is:{i}"))
        for i in range(3)
    }  # fmt: skip
    backup = tmp_path / "listeners.jsonl"
    assert durian(topics, "listeners", "export", "-o", str(backup)).exit_code == 0
    assert len(backup.read_text().splitlines()) == 3

    other = msgspec.structs.replace(topics, topic_prefix=topics.topic_prefix + "b")
    TopicAdmin(other).ensure()
    result = durian(other, "listeners", "import", str(backup))
    assert result.exit_code == 0 and "imported 3 listener(s)" in result.stdout
    original, restored = ListenerStore(topics).read(), ListenerStore(other).read()
    assert restored.listeners.keys() == ids
    assert restored.listeners == original.listeners


def test_import_with_a_bad_line_names_it_and_writes_nothing(
    topics: conf.Settings, tmp_path: Path
) -> None:
    good = ListenerSpec(id="lst_ok", hook="person", url="https://e.com", secret=generate_secret())
    bad_url = encode(good).replace(b"https://e.com", b"mailto:x").replace(b"lst_ok", b"lst_2")
    source = tmp_path / "in.jsonl"
    source.write_bytes(encode(good) + b"\n" + b"{not json\n" + b"\n" + bad_url + b"\n")
    before = raw_records(topics)
    result = durian(topics, "listeners", "import", str(source))
    assert result.exit_code == 1
    assert "2 bad line(s), nothing was imported" in result.output
    assert "line 2:" in result.output and "line 4:" in result.output
    assert "http:// or https://" in result.output
    assert raw_records(topics) == before


def test_import_dry_run_checks_without_writing(topics: conf.Settings, tmp_path: Path) -> None:
    good = ListenerSpec(id="lst_ok", hook="person", url="https://e.com", secret=generate_secret())
    source = tmp_path / "in.jsonl"
    source.write_bytes(encode(good) + b"\n")
    result = durian(topics, "listeners", "import", "--dry-run", str(source))
    assert result.exit_code == 0 and "1 listener(s) are valid" in result.stdout
    assert raw_records(topics) == []


def test_reading_the_table_applies_overwrites_and_tombstones_in_order(
    topics: conf.Settings,
) -> None:
    secret = generate_secret()
    specs = [
        ListenerSpec(id=f"lst_{i:05d}", hook="person", url=f"https://e.com/{i}", secret=secret)
        for i in range(3000)
    ]
    seen: list[tuple[int, int]] = []
    with ListenerStore(topics) as store:
        store.put(*specs)
        store.put(msgspec.structs.replace(specs[0], url="https://e.com/changed"))
        for spec in specs[1000:2000]:
            store.delete(spec.id)
        table = store.read(progress=lambda done, expected: seen.append((done, expected)))
    assert len(table.listeners) == 2000
    assert table.listeners["lst_00000"].url == "https://e.com/changed"
    assert "lst_01500" not in table.listeners and "lst_02500" in table.listeners
    assert (table.records, table.tombstones) == (4001, 1000)
    assert seen and seen[-1][0] == 4001


def test_an_unreadable_record_is_reported_and_skipped(topics: conf.Settings) -> None:
    ok = added_id(durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com"))
    producer = Producer(confluent_config(topics, "table-writer"))
    producer.produce(TopicNames(topics.topic_prefix).listeners, key=b"lst_bad", value=b"{garbage")
    assert producer.flush(10) == 0
    result = durian(topics, "listeners", "list", "--json")
    assert result.exit_code == 0
    assert [msgspec.json.decode(line)["id"] for line in result.stdout.splitlines()] == [ok]
    assert "unreadable listener record skipped" in result.stderr
    assert f"{TopicNames(topics.topic_prefix).listeners}[0]@1" in result.stderr


def test_listing_when_the_topics_do_not_exist_says_what_to_run(settings: conf.Settings) -> None:
    result = durian(settings, "listeners", "list")
    assert result.exit_code == 1
    assert "run `durian topics create`" in result.output


def test_a_bulk_write_leaves_the_end_offset_right_for_readers_that_recover_by_it(
    topics: conf.Settings,
) -> None:
    # tansu's ListOffsets answers the last batch's base offset + 1; the store
    # sends the last record alone so that this is the true end of the topic.
    secret = generate_secret()
    specs = [
        ListenerSpec(id=f"lst_{i}", hook="person", url="https://e.com", secret=secret)
        for i in range(500)
    ]
    with ListenerStore(topics) as store:
        store.put(*specs)
    consumer = Consumer(confluent_config(topics, "reader", **{"group.id": uuid.uuid4().hex}))
    try:
        topic = TopicNames(topics.topic_prefix).listeners
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    assert high == 500


def test_a_hook_no_site_declares_is_refused_unless_forced(topics: conf.Settings) -> None:
    from durian.records import HookSpec

    # No site has declared its hooks yet: the CLI cannot check, says so, and creates it.
    first = durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/a")
    assert first.exit_code == 0 and "cannot check that hook 'person' exists" in first.stderr
    # A site declares its hooks (its first event, or manage.py durian_hooks, writes these).
    producer = Producer(confluent_config(topics, "writer"))
    for name in ("person", "invoice.paid"):
        spec = HookSpec(name=name, fields=("name", "address"))
        producer.produce(
            TopicNames(topics.topic_prefix).hooks, key=name.encode(), value=encode(spec)
        )
    producer.flush(10)
    listed = durian(topics, "hooks", "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["invoice.paid", "person"]
    assert "name, address" in listed.stdout

    typo = durian(topics, "listeners", "add", "--hook", "persn", "--url", "https://e.com/b")
    assert typo.exit_code != 0
    assert "no site declares hook 'persn' (declared: invoice.paid, person)" in typo.output
    assert "--force" in typo.output
    known = durian(topics, "listeners", "add", "--hook", "person", "--url", "https://e.com/c")
    assert known.exit_code == 0 and "warning" not in known.stderr
    forced = durian(topics, "listeners", "add", "--hook", "persn", "--url", "https://e.com/b",
                    "--force")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    hooks = sorted(spec.hook for spec in ListenerStore(topics).read().listeners.values())
    assert hooks == ["persn", "person", "person"]
