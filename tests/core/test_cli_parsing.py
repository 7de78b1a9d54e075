"""What the ``durian`` command reads from its arguments, without a broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from durian.cli import main, parse_when

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [("30m", 1800), ("2h", 7200), ("7d", 7 * 86400), ("90s", 90), ("1.5h", 5400)],
)
def test_durations_count_back_from_now(text: str, seconds_ago: float) -> None:
    assert parse_when(text, now=NOW) == NOW - seconds_ago


def test_iso_times_are_utc_unless_they_say_otherwise() -> None:
    assert parse_when("2026-11-25T10:00", now=NOW) == NOW - 7200
    assert parse_when("2026-11-25T10:00:00+01:00", now=NOW) == NOW - 3 * 3600


def test_anything_else_says_what_is_expected() -> None:
    with pytest.raises(click.BadParameter, match=r"ISO time .* duration ago"):
        parse_when("yesterday", now=NOW)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dlq", "replay"], "say which letters"),
        (["dlq", "purge", "--yes"], "exactly one of --before WHEN or --all"),
        (["dlq", "purge", "--all", "--before", "2h", "--yes"], "exactly one of"),
    ],
)
def test_dead_letter_commands_refuse_to_guess(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("command", ["durian", "durian-stream", "durian-deliver"])
def test_help_needs_no_broker(command: str) -> None:
    from durian.embedded import free_port

    result = subprocess.run(
        [str(Path(sys.executable).parent / command), "--help"],
        env={**os.environ, "DURIAN_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args", [["listeners", "add", "--hook", "person", "--url", "https://e.com/"], ["hooks", "list"]]
)
def test_without_a_broker_a_command_says_so_once_within_seconds(args: list[str]) -> None:
    from durian.embedded import free_port

    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "durian"), *args],
        env={**os.environ, "DURIAN_BOOTSTRAP_SERVERS": bootstrap},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()  # one line, not the client's retries
    assert line.startswith(f"Error: no Kafka broker answered at {bootstrap} within 5 s (")
    assert line.endswith("is it running? `make run` starts the embedded one")
    assert time.monotonic() - started < 15  # the client alone retried for 15-40 s
