"""The embedded stack: what `durian up` and the test fixtures start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from durian import conf
from durian.embedded import EmbeddedBroker, EmbeddedRedis, EmbeddedStack, free_port
from durian.exceptions import BrokerUnavailable
from durian.topic_admin import TopicAdmin
from tests.conftest import wait_for

DURIAN = str(Path(sys.executable).with_name("durian"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(child) for child in text)
    return out


def test_broker_starts_answers_kafka_and_stops_without_leftovers() -> None:
    broker = EmbeddedBroker(port=0)
    broker.start()
    assert broker.process is not None
    pid = broker.process.pid
    try:
        settings = conf.load(environ={}, overrides={"BOOTSTRAP_SERVERS": broker.bootstrap_servers})
        TopicAdmin(settings).wait_ready(timeout=10)
    finally:
        broker.stop()
    assert not alive(pid)
    assert not broker.running


def test_a_taken_port_is_refused_with_a_clear_error_instead_of_a_broker_panic() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(BrokerUnavailable, match=f"port 127.0.0.1:{port} is taken"):
            broker.start()
        assert broker.process is None


def test_redis_starts_on_a_free_port_and_answers() -> None:
    with EmbeddedRedis(port=0) as server:
        assert isinstance(server, EmbeddedRedis)
        client = redis.Redis.from_url(server.url)
        try:
            assert client.set("durian", "ok") and client.get("durian") == b"ok"
        finally:
            client.close()


def test_stack_reuses_a_reachable_redis_instead_of_starting_one(redis_server: str) -> None:
    with EmbeddedStack(redis_url=redis_server) as stack:
        assert stack.redis is None
        assert stack.redis_url == redis_server


def test_stack_starts_redis_on_the_configured_port_when_nothing_answers() -> None:
    port = free_port()
    with EmbeddedStack(redis_url=f"redis://127.0.0.1:{port}/0") as stack:
        assert stack.redis is not None and stack.redis.port == port
        assert stack.redis_url == f"redis://127.0.0.1:{port}/0"


def test_stack_start_failure_stops_what_already_started() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The broker starts; Redis cannot use the taken port, so it picks another;
        # then force a failure by making the redis binary unavailable.
        stack = EmbeddedStack(redis_url=f"redis://127.0.0.1:{port}/0")
        env_path = os.environ.get("PATH", "")
        os.environ["PATH"] = "/nonexistent"
        try:
            with pytest.raises(BrokerUnavailable, match="redis-server is not installed"):
                stack.start()
        finally:
            os.environ["PATH"] = env_path
        assert not stack.broker.running


@contextlib.contextmanager
def _start_up(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`durian up` in a subprocess, killed on the way out if a test left it running."""
    with subprocess.Popen(
        [DURIAN, "up"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def _wait_ready(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "ready. In another shell" in line:
            return lines
    process.kill()
    pytest.fail("durian up did not get ready:\n" + "".join(lines))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_durian_up_stops_broker_and_redis_on_a_signal(how: str) -> None:
    port, redis_port = free_port(), free_port()
    env = {
        "DURIAN_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "DURIAN_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    with _start_up(env) as process:
        lines = _wait_ready(process)
        assert f"tansu on 127.0.0.1:{port}" in "".join(lines)
        assert f"redis://127.0.0.1:{redis_port}/0 (started here)" in "".join(lines)
        started = children(process.pid)
        assert len(started) == 2
        process.send_signal(getattr(signal, how))
        assert process.wait(20) == 0
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=10, what="children to exit")


def test_durian_up_children_die_when_it_is_killed_hard() -> None:
    env = {
        "DURIAN_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "DURIAN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    with _start_up(env) as process:
        _wait_ready(process)
        started = children(process.pid)
        assert len(started) == 2
        process.kill()
        process.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=10, what="orphans to exit")


def test_durian_up_reports_a_taken_broker_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [DURIAN, "up"],
            env={**os.environ, "DURIAN_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"port 127.0.0.1:{port} is taken" in result.stderr
