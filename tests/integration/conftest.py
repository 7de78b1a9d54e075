"""The whole pipeline as real processes: Faust worker and delivery workers.

``pipeline`` (one per test module) creates the topics under a fresh prefix,
points the Django site at them, and starts ``durian-stream`` and
``durian-deliver`` as subprocesses; ``receiver`` is a real HTTP server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.test import override_settings

from durian import conf
from durian.topic_admin import TopicAdmin
from producer import publish
from tests.producer.conftest import database_url
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


@dataclass
class Pipeline:
    settings: conf.Settings
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def create(cls, bootstrap: str, redis_url: str, logs: Path, **settings: str) -> Pipeline:
        """Topics under a fresh prefix on the embedded broker; ``settings`` are
        ``DURIAN_<NAME>`` values for every process started here."""
        env = {
            "DURIAN_BOOTSTRAP_SERVERS": bootstrap,
            "DURIAN_REDIS_URL": redis_url,
            "DURIAN_TOPIC_PREFIX": f"p{uuid.uuid4().hex[:10]}",
            "DURIAN_EMBEDDED": "true",
            "DURIAN_ALLOW_PRIVATE_ADDRESSES": "true",  # receivers are on 127.0.0.1
            **{f"DURIAN_{name.upper()}": value for name, value in settings.items()},
        }
        loaded = conf.load(environ=env)
        TopicAdmin(loaded).ensure()
        return cls(loaded, env, logs)

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            env={**os.environ, **self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[name] = process
        return process

    def kill(self, name: str) -> int:
        """SIGKILL: no draining, no commit, no goodbye."""
        process = self.processes.pop(name)
        process.kill()
        return process.wait(30)

    def stop(self, name: str, timeout: float = 30) -> int:
        process = self.processes.pop(name)
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str,
    redis_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    django_db_setup: None,
) -> Iterator[Pipeline]:
    pipe = Pipeline.create(
        kafka_bootstrap,
        redis_server,
        tmp_path_factory.mktemp("pipeline"),
        events_partitions="2",
        deliveries_partitions="4",
        retry_schedule="1,2",
    )
    pipe.start("stream", ["durian-stream"])  # default log level; restarts use -v
    pipe.start("deliver-1", ["durian-deliver", "-v"])
    start_relay(pipe)
    overrides = {key.removeprefix("DURIAN_"): value for key, value in pipe.env.items()}
    with override_settings(DURIAN=overrides):
        try:
            yield pipe
        finally:
            publish.flush()
            pipe.stop_all()


def start_relay(pipe: Pipeline, name: str = "relay") -> subprocess.Popen[bytes]:
    """``manage.py durian_relay`` for the test site's database: the site's outbox to Kafka."""
    command = ["python", "-m", "django", "durian_relay", "--settings=tests.django_settings"]
    return pipe.start(name, command, env={"DURIAN_TEST_DATABASE_URL": database_url()})


@pytest.fixture
def fresh_receiver() -> Iterator[Receiver]:
    """A receiver of this test's own (load and fault tests set its answers)."""
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()
