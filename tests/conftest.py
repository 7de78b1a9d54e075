"""Fixtures for every test: a clean environment, settings, and polling helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest

from durian import conf

#: Under CI a missing service is a failure, never a skip.
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

T = TypeVar("T")


def missing_service(reason: str) -> None:
    """Skip locally; fail under CI=true."""
    if CI:
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(reason)


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Keep os.environ clean for every test: no DURIAN_* leaks in or out."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith("DURIAN_") and not key.startswith("DURIAN_TEST_"):
            del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)


def make_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> conf.Settings:
    return conf.load(environ=environ or {}, overrides=overrides)
