"""The whole durian stack on one machine, for a first look and for development.

    make run        (or: .venv/bin/python deploy/embedded/run.py)

Starts the embedded broker (tansu, memory storage) and Redis, creates the
topics, then the Faust stream worker, a delivery worker, a demo receiver that
verifies signatures, the outbox relay, and the demo Django site (a Person model with the seed's
PersonHook) with durian's web interface and delivery log. It registers a listener
for the receiver and saves one Person, so a verified delivery shows within the
first minute, and prints the web interface's address with a generated admin
password. Ctrl-C stops it all.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

from durian import conf
from durian.embedded import EmbeddedStack, port_is_free, spawn
from durian.listener_store import ListenerStore
from durian.records import ListenerSpec, new_id
from durian.signing import generate_secret
from durian.topic_admin import TopicAdmin

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SITE_PORT, RECEIVER_PORT = 8000, 8001


def say(line: str) -> None:
    print(f"durian run: {line}", flush=True)


def main() -> None:
    def stop(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    for port in (SITE_PORT, RECEIVER_PORT):
        if not port_is_free(port):
            sys.exit(f"durian run: port {port} is taken; stop what uses it and try again")
    settings = conf.load()
    data = Path(tempfile.mkdtemp(prefix="durian-run-"))
    port = settings.bootstrap_servers.split(",")[0].rpartition(":")[2]
    stack = EmbeddedStack(broker_port=int(port) if port_is_free(int(port)) else 0,
                          redis_url=settings.redis_url)  # fmt: skip
    children: list[subprocess.Popen[bytes]] = []
    try:
        stack.start(on_step=say)
        assert stack.redis_url is not None
        env = {
            **os.environ,
            "DURIAN_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
            "DURIAN_REDIS_URL": stack.redis_url,
            "DURIAN_EMBEDDED": "true",
            "DURIAN_ALLOW_PRIVATE_ADDRESSES": "true",  # the demo receiver is on 127.0.0.1
            "DJANGO_SETTINGS_MODULE": "demo.settings",
            "DEMO_DATA_DIR": str(data),
            "PYTHONPATH": str(HERE / "site"),
        }
        settings = conf.load(environ=env)
        TopicAdmin(settings).ensure()
        say(f"topics  ready under {settings.topic_prefix}.*")

        secret = generate_secret()
        listener = ListenerSpec(
            id=new_id("lst"), hook="person", url=f"http://127.0.0.1:{RECEIVER_PORT}/hooks",
            secret=secret, description="the demo receiver",
        )  # fmt: skip
        ListenerStore(settings).put(listener)
        say(f"listener {listener.id}: every person -> {listener.url}")

        python = str(BIN / "python")
        logs = data / "logs"
        logs.mkdir()
        children.append(spawn([python, str(HERE / "receiver.py"), "--port", str(RECEIVER_PORT),
                               "--secret", secret], env=env))  # fmt: skip
        children.append(spawn([str(BIN / "durian-stream"), "-v"], env=env, log=logs / "stream.log"))
        children.append(
            spawn([str(BIN / "durian-deliver"), "-v"], env=env, log=logs / "deliver.log")
        )
        manage = [python, str(HERE / "site" / "manage.py")]
        subprocess.run([*manage, "migrate", "--verbosity", "0"], env=env, check=True)
        password = secrets.token_urlsafe(9)
        subprocess.run(
            [*manage, "createsuperuser", "--noinput", "--username", "admin",
             "--email", "admin@example.com"],
            env={**env, "DJANGO_SUPERUSER_PASSWORD": password}, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        children.append(spawn([*manage, "durian_log"], env=env, log=logs / "delivery-log.log"))
        children.append(
            spawn(
                [*manage, "durian_relay", "--poll-interval", "0.2"], env=env, log=logs / "relay.log"
            )
        )
        children.append(spawn([*manage, "runserver", f"127.0.0.1:{SITE_PORT}", "--noreload"],
                              env=env, log=logs / "site.log"))  # fmt: skip
        say(f"workers started; their logs are in {logs}")
        _wait_until_ready(logs / "stream.log")
        subprocess.run(
            [*manage, "shell", "--no-imports", "-c",
             "from people.models import Person; Person.objects.create(name='Joe', address='Oslo')"],
            env=env, check=True,
        )  # fmt: skip
        say("saved Person(name='Joe'); the receiver prints the verified delivery below.")
        say(f"Add people at http://127.0.0.1:{SITE_PORT}/ and watch them arrive.")
        say(f"Web interface: http://127.0.0.1:{SITE_PORT}/webhooks/  (user admin, password "
            f"{password}): pick an event, create a listener, watch its deliveries.")  # fmt: skip
        say(f"  (a listener at http://127.0.0.1:{RECEIVER_PORT}/hooks/<anything> is verified "
            "and printed by the demo receiver)  Ctrl-C stops.")  # fmt: skip
        while all(child.poll() is None for child in children) and stack.broker.running:
            time.sleep(0.5)
        say(f"a process exited on its own; stopping everything (logs: {logs})")
    except KeyboardInterrupt:
        say("stopping")
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        stack.stop()


def _wait_until_ready(log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "Worker]: Ready" in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    say(f"the stream worker is not ready after {timeout:.0f} s; see {log}")


if __name__ == "__main__":
    main()
