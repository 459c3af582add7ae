"""The plans path's cheap reads (issue 20) answer as the decoded reads they replace.

``forgotten_at`` and ``has_totals`` look at the stored bytes when no decoded value is at hand
(:meth:`StepState.known`) and decode only a row that exists; the oracle is what they were:
``daily_of(...).forgotten_at_ms`` and ``not totals_of(...).is_empty()``, read through a step
of their own. Every way a value can be held is tried: no row, a row in the store, its decoded
value in the store's object cache (fresh, or overwritten by this step), written by this step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from domain.intake.daily import AccountDaily
from domain.intake.usage import AccountTotals
from domain.plans.periods import calendar_month
from state.store import PartitionStore
from state.transaction import StepState
from tables.daily import DAILY, daily_of, put_daily
from tables.forget import forgotten_at
from tables.totals import TOTALS, has_totals, put_totals, totals_of
from tests.harness.steps import open_store

ACCOUNT = "acct-1"
KEY = ACCOUNT.encode()

#: Something a step does to the state.
Act = Callable[[StepState], object]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = open_store(tmp_path, 0, cached_objects=100)
    yield opened
    opened.close()


def committed(store: PartitionStore, act: Act, *, cached: str) -> None:
    """A step that did ``act`` applied to ``store``; its decoded values settled in the
    store's object cache if ``cached`` is "yes"."""
    seed = StepState(store)
    act(seed)
    store.apply(seed.updates())
    if cached == "yes":
        store.objects.settle(seed.updates(), seed.objects)


def step_that(store: PartitionStore, act: Act) -> StepState:
    """A new step's state on ``store``, once it did ``act``."""
    state = StepState(store)
    act(state)
    return state


def totals(n: int) -> AccountTotals:
    held = AccountTotals()
    if n:
        held.add("api_calls", calendar_month(1_795_176_000_000), Decimal(n))
    return held


CACHED = ("no", "yes")  # the stored value decoded in the store's object cache
#: What the store holds (daily): no row, a forgotten marker, days (no marker).
DAILY_STORED: dict[str, Act] = {
    "none": lambda state: None,
    "marker": lambda state: put_daily(state, ACCOUNT, AccountDaily.forgotten(123), keep=True),
    "days": lambda state: put_daily(state, ACCOUNT, AccountDaily(), keep=True),
}
#: What the step did first (daily).
DAILY_STEP: dict[str, Act] = {
    "nothing": lambda state: None,
    "read": lambda state: daily_of(state, ACCOUNT),
    "wrote-marker": lambda state: put_daily(state, ACCOUNT, AccountDaily.forgotten(456)),
    "wrote-empty": lambda state: put_daily(state, ACCOUNT, AccountDaily()),
}
#: What the step did first (totals).
TOTALS_STEP: dict[str, Act] = {
    "nothing": lambda state: None,
    "read": lambda state: totals_of(state, ACCOUNT),
    "wrote-0": lambda state: put_totals(state, ACCOUNT, totals(0)),
    "wrote-7": lambda state: put_totals(state, ACCOUNT, totals(7)),
}


@pytest.mark.parametrize(
    ("stored", "cached", "step"), list(itertools.product(DAILY_STORED, CACHED, DAILY_STEP))
)
def test_forgotten_at_is_the_decoded_daily_value(
    store: PartitionStore, stored: str, cached: str, step: str
) -> None:
    committed(store, DAILY_STORED[stored], cached=cached)
    act = DAILY_STEP[step]
    assert (
        forgotten_at(step_that(store, act), ACCOUNT)
        == daily_of(step_that(store, act), ACCOUNT).forgotten_at_ms
    )


@pytest.mark.parametrize(
    ("stored", "cached", "step"), list(itertools.product((0, 5), CACHED, TOTALS_STEP))
)
def test_has_totals_is_the_decoded_totals_value(
    store: PartitionStore, stored: int, cached: str, step: str
) -> None:
    committed(store, lambda seed: put_totals(seed, ACCOUNT, totals(stored)), cached=cached)
    act = TOTALS_STEP[step]
    assert has_totals(step_that(store, act), ACCOUNT) == (
        not totals_of(step_that(store, act), ACCOUNT).is_empty()
    )


def test_known_reads_nothing_new(store: PartitionStore) -> None:
    state = StepState(store)
    assert not state.known(DAILY.name, KEY)
    assert forgotten_at(state, ACCOUNT) is None
    assert not has_totals(state, ACCOUNT)
    # Nothing decoded for an account that holds nothing: no empty values to cache.
    assert (DAILY.name, KEY) not in state.objects and (TOTALS.name, KEY) not in state.objects
