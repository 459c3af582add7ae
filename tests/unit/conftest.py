"""Fixtures of the unit tier."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.engine import FakeKafka


@pytest.fixture
async def kafka() -> AsyncIterator[FakeKafka]:
    """The one broker of the engine fakes a test's engines share, shut down after it."""
    found = FakeKafka()
    yield found
    await found.shutdown()
