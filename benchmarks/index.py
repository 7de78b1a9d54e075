"""The listener index alone: events matched per second as listeners grow, beside a plain
scan of every listener in the same run. Listeners on hook ``person``, one condition each
(an ``Is`` on the name, a 4-letter ``Startswith``, ``Endswith`` or ``Contains``, a
``Like`` of four letters and a wildcard); events with random 8-letter names.

    python benchmarks/index.py [--sizes 1000,100000]
"""

from __future__ import annotations

import argparse
import random
import string
import time
from datetime import UTC, datetime
from typing import Any

from durian.match import (
    Contains,
    Endswith,
    Is,
    Like,
    Startswith,
    compile_spec,
    deepmatch,
    spec_from_json,
    spec_to_json,
)
from durian.records import Event, ListenerSpec
from durian.signing import generate_secret
from stream_processor.index import ListenerIndex

SECRET = generate_secret()
KINDS: dict[str, Any] = {
    "Is": Is,
    "Startswith": Startswith,
    "Endswith": Endswith,
    "Contains": lambda w: Contains(w),  # four letters anywhere in the name
    "Like": lambda w: Like(f"{w[:2]}.{w[2:]}"),  # two letters, any one, two letters
}


def word(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=n))


def listeners(kind: str, n: int, rng: random.Random) -> list[ListenerSpec]:
    make = KINDS[kind]
    size = 8 if kind == "Is" else 4
    return [
        ListenerSpec(
            id=f"lst_{i}",
            hook="person",
            url="https://example.com/hook",
            secret=SECRET,
            match=spec_to_json(compile_spec({"name": make(word(rng, size))})),
        )
        for i in range(n)
    ]


def rate(seconds: float, count: int) -> str:
    return f"{count / seconds:>12,.0f}/s"


def run(sizes: list[int]) -> None:
    rng = random.Random(7)
    events = [
        Event(
            id=f"evt_{i}", hook="person", occurred_at=datetime.now(UTC), data={"name": word(rng, 8)}
        )
        for i in range(2000)
    ]
    print(f"{'matcher':12} {'listeners':>10} {'build':>8} {'index':>14} {'plain scan':>14}")
    for kind in KINDS:
        for n in sizes:
            specs = listeners(kind, n, rng)
            started = time.perf_counter()
            index = ListenerIndex()
            for spec in specs:
                index.put(spec)
            index.match(events[0])  # the automaton and the RE2 set are built at first use
            built = time.perf_counter() - started
            started = time.perf_counter()
            for e in events:
                index.match(e)
            indexed = time.perf_counter() - started
            compiled = [spec_from_json(s.match) for s in specs]
            sample = events[: max(1, min(len(events), 2_000_000 // max(n, 1)))]
            started = time.perf_counter()
            for e in sample:
                [c for c in compiled if deepmatch(c, e.data)]
            scanned = time.perf_counter() - started
            print(
                f"{kind:12} {n:>10,} {built:>7.2f}s {rate(indexed, len(events))} "
                f"{rate(scanned, len(sample))}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100000")
    args = parser.parse_args()
    run([int(x) for x in args.sizes.split(",")])
