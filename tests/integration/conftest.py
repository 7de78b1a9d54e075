"""Integration tests use the session services from ``tests/conftest.py``."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration
