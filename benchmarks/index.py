"""The listener index alone: events matched per second as listeners grow, beside a plain
scan of every listener in the same run, with the memory the listeners take, the time to
build the index from the listeners topic's records (a stream worker's start-up, minus
reading the topic) and the time one listener update takes to apply.

Listeners on hook ``person``; events carry a random 8-letter ``name``, a ``status`` out
of 5 and a ``country`` out of 50. One row per kind of listener:

* ``Is``: the name; ``Is x2``: status and name (one key from both);
* ``Startswith`` / ``Endswith`` / ``Contains``: 4 letters of the name;
* ``Like``: 4 letters and one more (``abcd[a-z]``), found by its literal ``abcd``;
* ``Like, no literal``: two letters, any one, two letters (``ab.cd``), by RE2 sets;
* ``mix``: a fifth ``Is`` (country and name), and the rest spread over the five others
  (with a status condition on the ``Like`` ones);
* ``..., none match``: upper-case patterns, which no name holds: the cost of listeners
  an event cannot match.

An update: a random listener's pattern changes, then the next event is matched (so any
segment the change made stale is rebuilt inside the figure). Median and max of 200.

    python benchmarks/index.py [--sizes 1000,100000,1000000] [--kinds "Is|Like"]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import string
import time
from collections.abc import Callable
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
from durian.records import Event, ListenerSpec, decode, encode
from durian.signing import generate_secret
from stream_processor.index import ListenerIndex

SECRET = generate_secret()
STATUSES = ["new", "paid", "sent", "done", "void"]
COUNTRIES = [f"c{i:02d}" for i in range(50)]


def word(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=n))


def _mix(rng: random.Random) -> dict[str, Any]:
    pick = rng.randrange(5)
    if pick == 0:
        return {"country": rng.choice(COUNTRIES), "name": word(rng, 8)}
    if pick == 1:
        return {"name": Startswith(word(rng, 4))}
    if pick == 2:
        return {"name": Endswith(word(rng, 4))}
    if pick == 3:
        return {"name": Contains(word(rng, 4))}
    return {"status": Is(rng.choice(STATUSES)), "name": Like(f"{word(rng, 4)}[a-z]")}


#: kind -> a random match spec of that kind
KINDS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "Is": lambda rng: {"name": Is(word(rng, 8))},
    "Is x2": lambda rng: {"status": rng.choice(STATUSES), "name": word(rng, 8)},
    "Startswith": lambda rng: {"name": Startswith(word(rng, 4))},
    "Endswith": lambda rng: {"name": Endswith(word(rng, 4))},
    "Contains": lambda rng: {"name": Contains(word(rng, 4))},
    "Like": lambda rng: {"name": Like(f"{word(rng, 4)}[a-z]")},
    "Like, no literal": lambda rng: {"name": Like(f"{word(rng, 2)}.{word(rng, 2)}")},
    "mix": _mix,
    # Upper-case patterns, which no event's name holds: what listeners cost that an
    # event cannot match.
    "Startswith, none match": lambda rng: {"name": Startswith(word(rng, 4).upper())},
    "Contains, none match": lambda rng: {"name": Contains(word(rng, 4).upper())},
    "Like, none match": lambda rng: {"name": Like(f"{word(rng, 4).upper()}[a-z]")},
}
#: RE2 sets cost one pass per 5,000 patterns: a million such listeners is not a target.
LARGEST = {"Like, no literal": 100_000}


def records(kind: str, n: int, rng: random.Random) -> list[bytes]:
    """The listeners topic's records for ``n`` listeners of one kind."""
    make = KINDS[kind]
    now = datetime.now(UTC)
    return [
        encode(
            ListenerSpec(
                id=f"lst_{i:07d}",
                hook="person",
                url="https://example.com/hook",
                secret=SECRET,
                match=spec_to_json(compile_spec(make(rng))),
                created_at=now,
                updated_at=now,
            )
        )
        for i in range(n)
    ]


def resident() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def rate(seconds: float, count: int) -> str:
    return f"{count / seconds:>10,.0f}/s"


def run(sizes: list[int], kinds: list[str]) -> None:
    rng = random.Random(7)
    now = datetime.now(UTC)
    events = [
        Event(
            id=f"evt_{i}",
            hook="person",
            occurred_at=now,
            data={
                "name": word(rng, 8),
                "status": rng.choice(STATUSES),
                "country": rng.choice(COUNTRIES),
            },
        )
        for i in range(5000)
    ]
    print(
        f"{'listeners':18} {'count':>10} {'GiB per M':>9} {'start-up':>9} {'index':>12} "
        f"{'matched':>8} {'plain scan':>12} {'update p50':>11} {'max':>9}"
    )
    for kind in kinds:
        for n in sizes:
            if n > LARGEST.get(kind, n):
                continue
            row(kind, n, rng, events)


def row(kind: str, n: int, rng: random.Random, events: list[Event]) -> None:
    data = records(kind, n, rng)
    gc.collect()
    before = resident()
    started = time.perf_counter()
    index = ListenerIndex()
    listeners = []
    with index.loading(len(data)):  # as the stream worker loads the listeners topic
        for record in data:
            listener = decode(record, ListenerSpec)
            index.put(listener)
            listeners.append(listener)
    index.match(events[0])  # automata and RE2 sets are built at first use
    built = time.perf_counter() - started
    gc.collect()
    # Per million listeners; below 100,000 the allocator's reuse hides the figure.
    memory = f"{(resident() - before) / n * 1e6 / 2**30:.2f}" if n >= 100_000 else "-"
    del data

    started = time.perf_counter()
    matched = sum(len(index.match(e)) for e in events)
    indexed = time.perf_counter() - started

    compiled = [spec_from_json(x.match) for x in listeners]
    sample = events[: max(1, min(len(events), 2_000_000 // n))]
    started = time.perf_counter()
    for e in sample:
        [c for c in compiled if deepmatch(c, e.data)]
    scanned = time.perf_counter() - started
    del compiled

    updates = []
    make = KINDS[kind]
    for i in range(200):
        changed = rng.choice(listeners)
        update = ListenerSpec(
            id=changed.id, hook="person", url=changed.url, secret=SECRET,
            match=spec_to_json(compile_spec(make(rng))),
        )  # fmt: skip
        started = time.perf_counter()
        index.put(update)
        index.match(events[i])
        updates.append(time.perf_counter() - started)
    print(
        f"{kind:18} {n:>10,} {memory:>9} {built:>8.2f}s {rate(indexed, len(events))} "
        f"{matched / len(events):>8.1f} {rate(scanned, len(sample))} "
        f"{statistics.median(updates) * 1000:>9.2f}ms {max(updates) * 1000:>7.1f}ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--kinds", default="|".join(KINDS), help="rows, by name, separated by |")
    args = parser.parse_args()
    run([int(x) for x in args.sizes.split(",")], args.kinds.split("|"))
