"""The plans path's cheap reads (issue 20) answer as the decoded reads they replace.

``forgotten_at`` and ``has_totals`` look at the stored bytes when no decoded value is at hand
(:meth:`StepState.known`) and decode only a row that exists; the oracle is what they were:
``daily_of(...).forgotten_at_ms`` and ``not totals_of(...).is_empty()``, read through a step
of their own. Every way a value can be held is tried: no row, a row in the store, its decoded
value in the store's object cache (fresh, or overwritten by this step), written by this step.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from domain.intake.daily import AccountDaily
from domain.intake.usage import AccountTotals
from domain.plans.periods import calendar_month
from state.store import PartitionStore, StoreOptions, open_partition
from state.transaction import StepState
from tables.daily import DAILY, daily_of, put_daily
from tables.forget import forgotten_at
from tables.registry import TABLE_COLUMNS
from tables.totals import TOTALS, has_totals, put_totals, totals_of

ACCOUNT = "acct-1"
KEY = ACCOUNT.encode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = open_partition(
        tmp_path, 0, TABLE_COLUMNS, StoreOptions(cache_mb=8, write_buffer_mb=1), 100
    )
    yield opened
    opened.close()


def totals(n: int) -> AccountTotals:
    held = AccountTotals()
    if n:
        held.add("api_calls", calendar_month(1_795_176_000_000), Decimal(n))
    return held


STORED = ("none", "marker", "days")  # what the store holds (daily), or totals 0 / 5
CACHED = ("no", "yes")  # its decoded value in the store's object cache
STEP = ("nothing", "read", "wrote-marker", "wrote-empty")  # what this step did first


def daily(kind: str) -> AccountDaily | None:
    if kind == "marker":
        return AccountDaily.forgotten(123)
    if kind == "days":
        held = AccountDaily()
        held.forgotten_at_ms = None
        return held
    return None


@pytest.mark.parametrize(
    ("stored", "cached", "step"), list(itertools.product(STORED, CACHED, STEP))
)
def test_forgotten_at_is_the_decoded_daily_value(
    store: PartitionStore, stored: str, cached: str, step: str
) -> None:
    seed = StepState(store)
    held = daily(stored)
    if held is not None:
        put_daily(seed, ACCOUNT, held, keep=True)
    store.apply(seed.updates())
    if cached == "yes":
        store.objects.settle(seed.updates(), seed.objects)

    def prepared() -> StepState:
        state = StepState(store)
        if step == "read":
            daily_of(state, ACCOUNT)
        elif step == "wrote-marker":
            put_daily(state, ACCOUNT, AccountDaily.forgotten(456))
        elif step == "wrote-empty":
            put_daily(state, ACCOUNT, AccountDaily())
        return state

    assert forgotten_at(prepared(), ACCOUNT) == daily_of(prepared(), ACCOUNT).forgotten_at_ms


@pytest.mark.parametrize(
    ("stored", "cached", "step"),
    list(itertools.product((0, 5), CACHED, ("nothing", "read", "wrote-0", "wrote-7"))),
)
def test_has_totals_is_the_decoded_totals_value(
    store: PartitionStore, stored: int, cached: str, step: str
) -> None:
    seed = StepState(store)
    put_totals(seed, ACCOUNT, totals(stored))
    store.apply(seed.updates())
    if cached == "yes":
        store.objects.settle(seed.updates(), seed.objects)

    def prepared() -> StepState:
        state = StepState(store)
        if step == "read":
            totals_of(state, ACCOUNT)
        elif step.startswith("wrote-"):
            put_totals(state, ACCOUNT, totals(int(step[6:])))
        return state

    assert has_totals(prepared(), ACCOUNT) == (not totals_of(prepared(), ACCOUNT).is_empty())


def test_known_reads_nothing_new(store: PartitionStore) -> None:
    state = StepState(store)
    assert not state.known(DAILY.name, KEY)
    assert forgotten_at(state, ACCOUNT) is None
    assert not has_totals(state, ACCOUNT)
    # Nothing decoded for an account that holds nothing: no empty values to cache.
    assert (DAILY.name, KEY) not in state.objects and (TOTALS.name, KEY) not in state.objects
