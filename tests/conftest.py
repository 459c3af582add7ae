"""Shared pytest hooks."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import settings

# No test asserts a duration (speed lives in the benchmarks): Hypothesis's default 200 ms
# deadline per example is a timed assertion that fails on a loaded machine (seen on
# tests/unit/test_recovery.py with two cores shared).
settings.register_profile("moments", deadline=None)
settings.load_profile("moments")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None]:
    """Keep each phase's report on the item so fixtures can dump logs on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
