"""Fault-tier fixtures: the integration tier's broker check, stack and leak check.

The fault tests run real workers on the real broker like the integration tests, then
kill, stop, fence or starve them; they share the integration fixtures.
"""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401 - fixtures, registered by import
    kafka_is_up,
    leaks_surface_in_their_own_test,
    stack,
)
