"""Plans before usage (contract 1.2): the per-partition gate and its caught-up rule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.gate import PlansGate, caught_up


class TP(NamedTuple):
    topic: str
    partition: int


PLANS, USAGE, REKEY = "account-plans", "usage-records", "usage-moments-usage-rekeyed"


@pytest.fixture
def make_gate() -> Callable[..., PlansGate]:
    """Factory: a configured gate, closed on ``assigned`` partitions when given."""

    def make(*assigned: int) -> PlansGate:
        gate = PlansGate()
        gate.configure(PLANS, [USAGE, REKEY])
        if assigned:
            gate.close(dict.fromkeys(assigned))
        return gate

    return make


# --- caught_up ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "processed_next", "committed", "position", "last_read", "expected"),
    [
        # An empty partition: nothing to read.
        (0, -1, None, None, None, True),
        # The agent processed up to (or past) the target.
        (10, 10, None, None, None, True),
        (10, 11, None, None, None, True),
        (10, 9, None, None, None, False),
        # The group's committed offset is there: nothing new since the last run.
        (10, -1, 10, None, None, True),
        (10, -1, 12, None, None, True),
        (10, -1, 9, None, None, False),
        # Fetched past the target (a transaction marker at 9) and the last record read is done.
        (10, 9, None, 10, 8, True),
        (10, 9, 5, 11, 8, True),
        # Fetched past the target but the last record read is not processed yet.
        (10, 9, None, 10, 9, False),
        (10, 5, None, 10, 8, False),
        # Nothing processed at all yet.
        (10, -1, None, 10, 8, False),
        # No position, or no record read.
        (10, 9, None, None, 8, False),
        (10, 9, None, 10, None, False),
        # Position short of the target.
        (10, 9, None, 9, 8, False),
        (10, -1, None, None, None, False),
    ],
)
def test_caught_up_truth_table(
    target: int,
    processed_next: int,
    committed: int | None,
    position: int | None,
    last_read: int | None,
    expected: bool,
) -> None:
    assert (
        caught_up(
            target=target,
            processed_next=processed_next,
            committed=committed,
            position=position,
            last_read=last_read,
        )
        is expected
    )


offsets = st.integers(min_value=-1, max_value=50)
maybe = st.none() | st.integers(min_value=0, max_value=50)


@given(target=offsets, processed=offsets, committed=maybe, position=maybe, last_read=maybe)
def test_caught_up_never_while_a_read_record_is_unprocessed_below_the_target(
    target: int,
    processed: int,
    committed: int | None,
    position: int | None,
    last_read: int | None,
) -> None:
    result = caught_up(
        target=target,
        processed_next=processed,
        committed=committed,
        position=position,
        last_read=last_read,
    )
    if target <= 0 or processed >= target or (committed is not None and committed >= target):
        assert result
    elif position is None or position < target:
        assert not result
    elif last_read is not None and last_read >= processed:
        assert not result


# --- PlansGate ------------------------------------------------------------------------------


def test_a_fresh_gate_holds_nothing(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate()
    assert gate.is_open(0)
    assert gate.all_caught_up()
    assert gate.closed_partitions() == []
    assert not gate.holds(TP(USAGE, 0))
    assert gate.target(0) is None
    assert gate.processed_next(0) == -1


def test_close_holds_usage_of_assigned_partitions(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0, 2)
    assert not gate.is_open(0) and not gate.is_open(2)
    assert gate.is_open(1)
    assert sorted(gate.closed_partitions()) == [0, 2]
    assert not gate.all_caught_up()
    assert gate.holds(TP(USAGE, 0)) and gate.holds(TP(REKEY, 2))
    assert not gate.holds(TP(PLANS, 0))  # plans themselves are never held
    assert not gate.holds(TP(USAGE, 1))
    assert not gate.holds(TP("other", 0))


def test_set_targets_alone_does_not_open(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0)
    gate.set_targets({0: 5})
    assert gate.target(0) == 5
    assert not gate.is_open(0)


def test_processing_up_to_the_target_opens(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0, 1)
    gate.set_targets({0: 5, 1: 3})
    gate.processed(0, 3)
    assert not gate.is_open(0)
    assert gate.processed_next(0) == 4
    gate.processed(0, 4)
    assert gate.is_open(0)
    assert not gate.holds(TP(USAGE, 0))
    assert gate.closed_partitions() == [1]
    gate.processed(1, 2)
    assert gate.all_caught_up()


def test_processed_before_the_target_is_known(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0)
    gate.processed(0, 9)
    assert not gate.is_open(0)  # no target yet: still held
    gate.set_targets({0: 10})
    assert gate.is_open(0)
    gate2 = make_gate(0)
    gate2.processed(0, 3)
    gate2.set_targets({0: 10})
    assert not gate2.is_open(0)


def test_open_declares_a_partition_caught_up(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0)
    gate.set_targets({0: 0})
    gate.open(0)
    assert gate.is_open(0) and gate.all_caught_up()


def test_a_new_assignment_closes_again_and_forgets_targets(
    make_gate: Callable[..., PlansGate],
) -> None:
    gate = make_gate(0, 1)
    gate.set_targets({0: 1, 1: 1})
    gate.processed(0, 0)
    gate.processed(1, 0)
    assert gate.all_caught_up()
    gate.close({1: None, 2: None})
    assert gate.is_open(0)  # revoked: no longer ours, not held
    assert not gate.is_open(1) and not gate.is_open(2)
    assert gate.target(1) is None
    assert sorted(gate.closed_partitions()) == [1, 2]
    gate.set_targets({1: 4, 2: 0})
    assert not gate.is_open(1)  # processed up to 1 before, must now reach 4
    gate.processed(1, 3)
    assert gate.is_open(1)


async def test_wait_caught_up_returns_once_opened(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0)
    gate.set_targets({0: 2})
    waiter = asyncio.create_task(gate.wait_caught_up(0))
    await asyncio.sleep(0)
    assert not waiter.done()
    gate.processed(0, 0)
    await asyncio.sleep(0)
    assert not waiter.done()
    gate.processed(0, 1)
    await asyncio.wait_for(waiter, timeout=1)


async def test_wait_caught_up_returns_at_once_when_open(
    make_gate: Callable[..., PlansGate],
) -> None:
    gate = make_gate(0)
    await asyncio.wait_for(gate.wait_caught_up(5), timeout=1)  # never assigned
    gate.open(0)
    await asyncio.wait_for(gate.wait_caught_up(0), timeout=1)


async def test_waiters_on_a_partition_all_wake(make_gate: Callable[..., PlansGate]) -> None:
    gate = make_gate(0, 1)
    waiters = [asyncio.create_task(gate.wait_caught_up(0)) for _ in range(3)]
    other = asyncio.create_task(gate.wait_caught_up(1))
    await asyncio.sleep(0)
    gate.open(0)
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=1)
    await asyncio.sleep(0)
    assert not other.done()
    gate.open(1)
    await asyncio.wait_for(other, timeout=1)
