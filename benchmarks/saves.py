"""What a hook costs the site's own requests: the outbox, the direct path, and no hook.

One run, one PostgreSQL database of its own (``DURIAN_TEST_DATABASE_URL``'s
server, default ``postgres://postgres@127.0.0.1:5432/``), one embedded broker.
A ``ModelHook`` on Django's ``Group`` model; each save is its own transaction, as
a request's is. Prints:

* µs per save with no hook connected, with the hook through the outbox (the
  default: an insert in the save's transaction) and with the hook on the direct
  path (``OUTBOX = False``: produced from the web process after the commit);
* for saves paced at 50/s and 500/s: save -> record produced to Kafka, p50/p99,
  through the relay (``manage.py durian_relay``'s ``Relay``, woken by
  PostgreSQL's NOTIFY) and on the direct path;
* the relay's own rate on a backlog.

    python benchmarks/saves.py [N]          (default N = 3000)
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import urllib.parse
import uuid

import django
import psycopg
from common import record
from django.conf import settings as django_settings
from pipeline import pct  # benchmarks/pipeline.py: the same percentiles

from durian import conf
from durian.embedded import EmbeddedBroker
from durian.reading import read_since
from durian.records import Event, decode
from durian.topic_admin import TopicAdmin
from durian.topics import TopicNames


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    server = urllib.parse.urlsplit(
        os.environ.get("DURIAN_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/")
    )
    database = f"durian_bench_{os.getpid()}"
    admin = server._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    try:
        with EmbeddedBroker() as broker:
            assert isinstance(broker, EmbeddedBroker)
            run(n, broker.bootstrap_servers, server, database)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def run(n: int, bootstrap: str, server: urllib.parse.SplitResult, database: str) -> None:
    overrides = {"BOOTSTRAP_SERVERS": bootstrap, "EMBEDDED": True, "TOPIC_PREFIX": "bench"}
    django_settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "producer"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": database,
                "USER": server.username or "postgres",
                "PASSWORD": server.password or "",
                "HOST": server.hostname or "127.0.0.1",
                "PORT": server.port or 5432,
            }
        },
        DURIAN=overrides,
        USE_TZ=True,
    )
    django.setup()
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import transaction
    from django.test.utils import override_settings

    from producer import publish
    from producer.hooks import ModelHook
    from producer.outbox import Relay

    call_command("migrate", verbosity=0)
    settings = conf.load(environ={}, overrides=overrides)
    TopicAdmin(settings).ensure()
    hook = ModelHook(name="group", model=Group, provides_args=["name"])

    def saves(count: int, per_second: float | None = None, direct: bool = False) -> float:
        """Save ``count`` groups named by the moment of their save; µs per save."""
        began = time.perf_counter()
        for k in range(count):
            with transaction.atomic():  # one transaction per save, as ATOMIC_REQUESTS makes it
                Group.objects.create(name=f"{time.time_ns()} {uuid.uuid4().hex[:8]}")
            if per_second:
                if direct:  # serve the producer's callbacks, as a web process's poll does
                    publish.publisher().producer.poll(0)
                pause = began + (k + 1) / per_second - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        return (time.perf_counter() - began) / count * 1e6

    # -- the cost of a save -------------------------------------------------
    costs: dict[str, list[float]] = {"no hook": [], "outbox": [], "direct": []}
    for _ in range(3):  # interleaved, so drift hits all three alike
        costs["no hook"].append(saves(n))
        hook.connect()
        costs["outbox"].append(saves(n))
        with override_settings(DURIAN={**overrides, "OUTBOX": False}):
            costs["direct"].append(saves(n))
            publish.flush(60)
        hook.disconnect()
    base = statistics.median(costs["no hook"])
    print(f"per save (median of 3 x {n} saves, each its own transaction, PostgreSQL):")
    for name, values in costs.items():
        extra = "" if name == "no hook" else f"  (+{statistics.median(values) - base:.0f} µs)"
        print(f"  {name:8} {statistics.median(values):7.0f} µs{extra}")
        record(f"save µs {name}", statistics.median(values))

    # -- the relay on the backlog the cost runs left -----------------------
    from producer.models import OutboxEvent

    backlog = OutboxEvent.objects.count()
    relay = Relay(settings, poll_interval=0.05)
    began = time.perf_counter()
    relay.run(drain=True)
    took = time.perf_counter() - began
    print(f"relay           {backlog:,} waiting events published in {took:.1f} s: "
          f"{backlog / took:,.0f} events/s")  # fmt: skip

    # -- save -> on Kafka, paced --------------------------------------------
    hook.connect()
    relay = Relay(settings, poll_interval=1.0)
    thread = threading.Thread(target=relay.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not relay.held:  # started, announced the hooks, took its shards
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the relay did not take its shards within 30 s")
        time.sleep(0.05)
    # Warm up: the first records of a new producer can wait ~0.4 s on the embedded broker.
    saves(20, 50)
    time.sleep(1.0)
    topic = TopicNames(settings.topic_prefix).events
    rows = []
    for per_second, count in ((50, 250), (500, 1000)):
        for path in ("outbox", "direct"):
            with override_settings(DURIAN={**overrides, "OUTBOX": path == "outbox"}):
                since = time.time()
                saves(count, per_second, direct=path == "direct")
                publish.flush(60)
                time.sleep(1.5)
            records = read_since(settings, {topic: since})[topic]
            lat = [
                r.timestamp * 1000
                - int(decode(r.value or b"", Event).data["name"].split()[0]) / 1e6
                for r in records
            ]
            rows.append((per_second, path, pct(lat, 50), pct(lat, 99), len(lat), count))
    relay.stop()
    thread.join(10)
    print("save -> record produced to Kafka (its timestamp, whole ms), p50 / p99:")
    for per_second, path, p50, p99, got, count in rows:
        missing = f"  MISSING {count - got}" if got < count else ""
        print(f"  {per_second:4}/s {path:7} {p50:6.1f} / {p99:6.1f} ms{missing}")


if __name__ == "__main__":
    main()
