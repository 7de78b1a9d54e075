"""``make bench``: every benchmark, then one table of the speed goals beside the figures.

Runs each benchmark in a process of its own (each prints its own figures as it
goes), collects the figures the goals are judged by (``benchmarks/common.py``)
and prints them against the goals, with the ceilings measured in the same run.
Everything runs on this machine at once (broker, Redis, receiver, workers), so the
ceilings say what the machine itself allows today.

    python benchmarks/goals.py            (all benchmarks)
    python benchmarks/goals.py stream.py pipeline.py    (only these)
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import read

HERE = Path(__file__).parent
BENCHMARKS = [
    "listeners.py",
    "index.py",
    "broker.py",
    "delivery.py",
    "saves.py",
    "stream.py",
    "pipeline.py",
]


@dataclass(frozen=True)
class Goal:
    number: int
    what: str
    target: str
    measured: Callable[[dict[str, float]], float]
    met: Callable[[float], bool] | None
    shown: str = "{:,.0f}"


ONE = "1 listener, 1+1"
GOALS = [
    Goal(1, "deliveries/s, 1 listener, 1 + 1 workers", ">= 2,000",
         lambda f: f[f"deliveries/s {ONE}"], lambda v: v >= 2000),
    Goal(1, "deliveries/s, 10 listeners, 1 + 1 workers", ">= 5,000",
         lambda f: f["deliveries/s 10 listeners, 1+1"], lambda v: v >= 5000),
    Goal(1, "one delivery worker / its HTTP path alone", ">= 70 %",
         lambda f: 100 * f["delivery worker alone"] / f["ceiling HTTP path"],
         lambda v: v >= 70, "{:.0f} %"),
    Goal(2, "save -> receipt at 50/s, p50 ms", "<= 20",
         lambda f: f[f"50/s p50 ms {ONE}"], lambda v: v <= 20, "{:.1f}"),
    Goal(2, "save -> receipt at 50/s, p99 ms", "<= 100",
         lambda f: f[f"50/s p99 ms {ONE}"], lambda v: v <= 100, "{:.1f}"),
    Goal(2, "save -> receipt at 500/s, p50 ms", "<= 20",
         lambda f: f[f"500/s p50 ms {ONE}"], lambda v: v <= 20, "{:.1f}"),
    Goal(2, "save -> receipt at 500/s, p99 ms", "<= 100",
         lambda f: f[f"500/s p99 ms {ONE}"], lambda v: v <= 100, "{:.1f}"),
    Goal(2, "burst of N, p99 s", "<= 1.5",
         lambda f: f[f"burst p99 s {ONE}"], lambda v: v <= 1.5, "{:.2f}"),
    Goal(3, "deliveries/s, 2 + 2 workers / 1 + 1", "> 100 %",
         lambda f: 100 * f["deliveries/s 1 listener, 2+2"] / f[f"deliveries/s {ONE}"],
         lambda v: v > 100, "{:.0f} %"),
    Goal(3, "deliveries/s, 4 + 4 workers / 2 + 2", ">= 100 %",
         lambda f: 100 * f["deliveries/s 1 listener, 4+4"] / f["deliveries/s 1 listener, 2+2"],
         lambda v: v >= 100, "{:.0f} %"),
    Goal(4, "µs a hook adds to a save, direct path", "<= 25",
         lambda f: f["save µs direct"] - f["save µs no hook"], lambda v: v <= 25),
    Goal(4, "µs a hook adds to a save, outbox (default)", "(measured beside it)",
         lambda f: f["save µs outbox"] - f["save µs no hook"], None),
    Goal(5, "five bursts on one stack, spread", "<= 10 %",
         lambda f: 100 * f["repeat spread"], lambda v: v <= 10, "{:.0f} %"),
    Goal(6, "one stream worker alone, events/s (1 listener)", ">= 10,000",
         lambda f: f["stream events/s 1"], lambda v: v >= 10_000),
    Goal(6, "one stream worker alone, jobs/s (10 listeners)", "(measured beside it)",
         lambda f: f["stream events/s 10"] * 10, None),
]  # fmt: skip

CEILINGS = [
    ("bare aiohttp client, 64-way", "ceiling aiohttp"),
    ("httpx on the aiohttp transport, 64-way", "ceiling httpx"),
    ("the delivery workers' HTTP path alone", "ceiling HTTP path"),
]


def main() -> None:
    chosen = sys.argv[1:] or BENCHMARKS
    with tempfile.NamedTemporaryFile(prefix="durian-figures-", suffix=".jsonl") as figures:
        env = {**os.environ, "BENCH_FIGURES": figures.name}
        failed = []
        for script in chosen:
            print(f"\n=== benchmarks/{script}", flush=True)
            if subprocess.run([sys.executable, str(HERE / script)], env=env).returncode:
                failed.append(script)
        found = read(figures.name)
    print("\n=== the speed goals (issue: speed), figures from this run")
    print(f"{'goal':4} {'what':48} {'target':>22} {'measured':>10}  met")
    for goal in GOALS:
        try:
            value = goal.measured(found)
        except (KeyError, ZeroDivisionError):
            print(f"{goal.number:<4} {goal.what:48} {goal.target:>22} {'-':>10}  (not run)")
            continue
        shown = "nan" if math.isnan(value) else goal.shown.format(value)
        verdict = "" if goal.met is None else "yes" if goal.met(value) else "NO"
        print(f"{goal.number:<4} {goal.what:48} {goal.target:>22} {shown:>10}  {verdict}")
    print("ceilings, same run:")
    for label, name in CEILINGS:
        if name in found:
            print(f"     {label:70} {found[name]:10,.0f} requests/s")
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
