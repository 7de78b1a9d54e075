"""What the benchmarks share: the figures they hand on, a profiler hook, stopping workers.

A benchmark calls ``record(name, value)`` for each figure a goal is judged by; when
``BENCH_FIGURES`` names a file (``goals.py`` sets it), the figure is appended to it
as a JSON line. Run on its own, a benchmark only prints.

``profile(pid, name, seconds)``: with ``BENCH_PROFILE`` set to a directory, py-spy
samples the worker ``pid`` for ``seconds`` into ``<directory>/<name>.txt`` (raw
stacks, one line per distinct stack with its count).

``stop(*processes)``: stop worker processes (SIGTERM to all, then SIGKILL to any
that has not left within 30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def record(name: str, value: float) -> None:
    path = os.environ.get("BENCH_FIGURES")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"name": name, "value": value}) + "\n")


def read(path: str) -> dict[str, float]:
    figures: dict[str, float] = {}
    with open(path) as lines:
        for line in lines:
            entry = json.loads(line)
            figures[entry["name"]] = entry["value"]
    return figures


def profile(pid: int, name: str, seconds: int) -> None:
    directory = os.environ.get("BENCH_PROFILE")
    if not directory:
        return
    spy = Path(sys.executable).parent / "py-spy"
    subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--format", "raw", "--duration", str(seconds),
         "--nonblocking", "-o", f"{directory}/{name}.txt"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
