"""Scaled out: two stream workers, two delivery workers and three event producers, all
started together under load. Nothing may be lost: read back from the topics, every
event has a job for each listener it matched, every job an outcome (``durian audit``),
and every job reached the receiver.

``DURIAN_TEST_SCALE_ROUNDS`` runs more rounds on the same workers (default 1 in CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from durian.audit import audit
from durian.listener_store import ListenerStore
from durian.records import ListenerSpec, job_id, new_id
from durian.signing import generate_secret
from tests.conftest import wait_for
from tests.integration.conftest import Pipeline
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

PRODUCERS = 3
EVENTS = 600  # per producer and round
ROUNDS = int(os.environ.get("DURIAN_TEST_SCALE_ROUNDS", "1"))


@pytest.fixture
def receiver(fresh_receiver: Receiver) -> Receiver:
    return fresh_receiver


@pytest.fixture
def pipe(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    pipe = Pipeline.create(
        kafka_bootstrap,
        redis_url,
        tmp_path,
        events_partitions="4",
        deliveries_partitions="4",
        retry_schedule="1,2,4",
    )
    try:
        yield pipe
    finally:
        pipe.stop_all()


def produce_events(pipe: Pipeline, tag: str) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.event_producer", str(EVENTS), f"{tag}-{n}"],
            env={**os.environ, **pipe.env},
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        for n in range(PRODUCERS)
    ]


def test_two_stream_and_two_delivery_workers_lose_nothing_under_load(
    pipe: Pipeline, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    everyone, joes = (
        ListenerSpec(
            id=new_id("lst"), hook="person", url=receiver.url(f"/{path}"),
            secret=generate_secret(), match=match, created_at=now, updated_at=now,
        )
        for path, match in (("all", {}), ("joe", {"name": {"$startswith": "J"}}))
    )  # fmt: skip
    with ListenerStore(pipe.settings) as store:
        store.put(everyone, joes)
    time.sleep(5.5)  # so that audit judges every event: no listener changed near it
    expected: set[str] = set()
    for round_ in range(ROUNDS):
        started = time.time()
        producers = produce_events(pipe, f"r{round_}")
        if round_ == 0:  # workers join while the first events pour in
            for n in (1, 2):
                pipe.start(f"stream-{n}", ["durian-stream", "-v"])
                pipe.start(f"deliver-{n}", ["durian-deliver", "-v", "--concurrency", "32"])
        names = {}
        for producer in producers:
            out, _ = producer.communicate(timeout=120)
            assert producer.returncode == 0, out
            names.update(line.split() for line in out.splitlines())
        assert len(names) == PRODUCERS * EVENTS
        expected |= {job_id(e, everyone.id) for e in names}
        expected |= {job_id(e, joes.id) for e, name in names.items() if name == "Joe"}

        def arrived(expected: set[str] = expected) -> bool:
            return set(receiver.ids("/")) >= expected

        try:
            wait_for(arrived, 180, what="every job at the receiver")
        except BaseException:
            missing = len(expected - set(receiver.ids("/")))
            found = audit(pipe.settings, started, grace=0)
            no_job = Counter(m.event_at.split("@")[0] for m in found.missing_jobs)
            no_outcome = Counter(m.last_seen.split("@")[0] for m in found.missing_outcomes)
            raise AssertionError(
                f"{missing} of {len(expected)} jobs never arrived; the audit finds events "
                f"without jobs on {dict(no_job)} and jobs without an outcome on "
                f"{dict(no_outcome)}; logs in {pipe.logs}"
            ) from None
        # Since this round began: its events, and its jobs (a job of an earlier round
        # written again, say after a rebalance, counts too, delivered or not).
        report = audit(pipe.settings, started, grace=0)
        assert report.ok, (report.missing_jobs[:5], report.missing_outcomes[:5])
        assert report.events == PRODUCERS * EVENTS and report.unverifiable == 0
        assert report.outcomes["delivered"] == report.jobs >= len(expected) // (round_ + 1)
        print(
            f"round {round_ + 1}/{ROUNDS}: {report.events} events from {PRODUCERS} producers, "
            f"{report.jobs} jobs, all delivered, audit ok in "
            f"{time.time() - started:.1f} s"
        )
