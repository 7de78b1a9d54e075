from __future__ import annotations

from pathlib import Path

import pytest

from durian import conf
from durian.exceptions import ImproperlyConfigured
from tests.conftest import make_settings


def test_defaults_load_without_any_source() -> None:
    settings = conf.load(environ={})
    assert settings.topic_prefix == "durian"
    assert settings.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert settings.embedded is False


def test_environment_values_are_converted_to_field_types() -> None:
    settings = conf.load(
        environ={
            "DURIAN_EVENTS_PARTITIONS": "12",
            "DURIAN_EMBEDDED": "true",
            "DURIAN_RETRY_SCHEDULE": "1, 2.5,10",
            "DURIAN_KAFKA_OPTIONS": '{"security.protocol": "SSL"}',
        }
    )
    assert settings.events_partitions == 12
    assert settings.embedded is True
    assert settings.retry_schedule == (1, 2.5, 10)
    assert settings.kafka_options == {"security.protocol": "SSL"}


def test_django_overrides_win_over_environment() -> None:
    settings = conf.load(
        environ={"DURIAN_TOPIC_PREFIX": "from-env"}, overrides={"TOPIC_PREFIX": "from-django"}
    )
    assert settings.topic_prefix == "from-django"


def test_config_file_sits_between_defaults_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "durian.toml"
    path.write_text('[durian]\ntopic_prefix = "from-file"\nevents_partitions = 3\n')
    settings = conf.load(environ={"DURIAN_CONFIG_FILE": str(path), "DURIAN_EVENTS_PARTITIONS": "5"})
    assert settings.topic_prefix == "from-file"
    assert settings.events_partitions == 5


def test_every_problem_is_reported_at_once_with_its_source() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        conf.load(
            environ={"DURIAN_EVENTS_PARTITIONS": "many", "DURIAN_RETRY_JITTER": "3"},
            overrides={"BOOTSTRAP_SERVER": "x:1", "REPLICATION_FACTOR": 0},
        )
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = str(info.value)
    assert "DURIAN_EVENTS_PARTITIONS='many' is invalid" in text
    assert "DURIAN_RETRY_JITTER='3' is invalid" in text
    assert "DURIAN['BOOTSTRAP_SERVER'] is not a durian setting" in text
    assert "BOOTSTRAP_SERVERS" in text  # the known names are listed
    assert "DURIAN['REPLICATION_FACTOR']=0 is invalid: Expected `int` >= 1" in text


def test_empty_bootstrap_servers_says_how_to_fix_it() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"DURIAN = \{'BOOTSTRAP_SERVERS'"):
        conf.load(environ={"DURIAN_BOOTSTRAP_SERVERS": " "})


def test_bad_bootstrap_server_and_redis_url_are_errors() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        conf.load(environ={"DURIAN_BOOTSTRAP_SERVERS": "kafka", "DURIAN_REDIS_URL": "http://x"})
    assert len(info.value.problems) == 2


def test_unreadable_config_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        conf.load(environ={"DURIAN_CONFIG_FILE": str(tmp_path / "missing.toml")})


def test_cross_field_warnings() -> None:
    settings = make_settings(
        DELIVERY_TIMEOUT=200, MAX_POLL_INTERVAL_MS=300_000, CONNECT_TIMEOUT=300
    )
    ids = {p.id for p in conf.check(settings)}
    assert {"durian.W002", "durian.W003"} <= ids
    embedded = make_settings(EMBEDDED=True, SESSION_TIMEOUT_MS=45_000)
    assert "durian.W004" in {p.id for p in conf.check(embedded)}
    assert conf.check(make_settings()) == []


def test_repr_and_redacted_hide_passwords() -> None:
    settings = make_settings(
        KAFKA_OPTIONS={"sasl.password": "hunter2", "sasl.username": "me"},
        REDIS_URL="redis://user:s3cret@redis:6379/0",
    )
    shown = repr(settings)
    assert "hunter2" not in shown and "s3cret" not in shown
    assert "sasl.username" in shown and "'me'" in shown


def test_invalid_values_are_not_echoed_for_secret_fields() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        conf.load(overrides={"KAFKA_OPTIONS": {"sasl.password": 12}})
    assert "12" not in str(info.value).replace("DURIAN", "")


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    import msgspec

    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for field in msgspec.structs.fields(conf.Settings):
        assert f"| `{field.name}` |" in text, f"docs/configuration.md lacks {field.name}"
    for problem_id in ("E001", "E002", "E003", "W001", "W002", "W003", "W004", "W005"):
        assert f"durian.{problem_id}" in text


def test_field_errors_and_cross_field_errors_come_together() -> None:
    environ = {
        "DURIAN_EVENTS_PARTITIONS": "many",
        "DURIAN_BOOTSTRAP_SERVERS": "",
        "DURIAN_REDIS_URL": "http://cache",
    }
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.load(environ=environ)
    text = str(caught.value)
    assert "DURIAN_EVENTS_PARTITIONS='many' is invalid" in text
    assert "DURIAN_BOOTSTRAP_SERVERS is empty" in text
    assert "DURIAN_REDIS_URL must be a redis://" in text


def test_a_misspelled_variable_is_named_with_the_closest_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="durian.conf"):
        conf.load(environ={"DURIAN_RETRY_JITER": "0.1", "DURIAN_CONFIG_FILE": "", "DURIAN_X": "1"})
    assert (
        "DURIAN_RETRY_JITER is not a durian setting and is ignored; did you mean "
        "DURIAN_RETRY_JITTER?" in caplog.text
    )
    assert "DURIAN_X is not a durian setting and is ignored\n" in caplog.text + "\n"
    assert "DURIAN_CONFIG_FILE" not in caplog.text
