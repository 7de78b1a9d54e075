"""Figures a benchmark hands to ``benchmarks/goals.py``, which prints them beside the goals.

A benchmark calls ``record(name, value)`` for each figure a goal is judged by; when
``BENCH_FIGURES`` names a file (``goals.py`` sets it), the figure is appended to it
as a JSON line. Run on its own, a benchmark only prints.
"""

from __future__ import annotations

import json
import os


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
