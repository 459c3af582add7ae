"""The bench's rebuild check compares like with like and says what differs (issue 16
item 14): it reads a worker's background work from its log, and prints every differing
field of an account view in full (it used to cut both views at 150 characters)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).parents[2] / "scripts"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """scripts/benchmark/views.py, where the bench reads background work and differences."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    from benchmark import views

    return views


TICKS = [
    "INFO agents.ticks: partition 0: day 20793 closed, cut 1796601600000 due and backlog"
    " consumed ({'usage:0': 77262}); tick sent",
    "INFO agents.ticks: partition 1: day 20793 closed, cut 1796601600000 due and backlog"
    " consumed ({'usage:1': 72415}); tick sent",
    "INFO agents.drops: partition 0: evaluating day 20793 for drops",
    "INFO agents.anniversaries: partition 0: anniversary pass at cut 1796601600000 started",
    "INFO agents.drops: partition 1: evaluating day 20793 for drops",
    "INFO agents.anniversaries: partition 1: anniversary pass at cut 1796601600000 started",
]
DONE = [
    "INFO agents.drops: partition 0: day 20793 evaluated for drops",
    "INFO agents.anniversaries: partition 0: anniversary pass at cut 1796601600000 complete",
    "INFO agents.drops: partition 1: day 20793 evaluated for drops",
    "INFO agents.anniversaries: partition 1: anniversary pass at cut 1796601600000 complete",
]


def test_background_work_is_busy_until_every_partition_finished_its_tick(
    bench: ModuleType,
) -> None:
    assert bench.background_of([]).busy(2, ticks_expected=True) == [
        "p0 no tick yet",
        "p1 no tick yet",
    ]
    running = bench.background_of(TICKS + DONE[:3])
    assert running.busy(2, ticks_expected=True) == [
        "p1 anniversary pass at cut 1796601600000 running",
        "p1 anniversary pass at cut 1796601600000 not complete",
    ]
    idle = bench.background_of(TICKS + DONE)
    assert idle.busy(2, ticks_expected=True) == []
    assert idle.lines == len(TICKS) + len(DONE)
    assert idle.resumed == []


def test_work_finished_without_a_start_is_resumed_work(bench: ModuleType) -> None:
    # The rebuilt worker's log: it finished a pass the original worker had started.
    rebuilt = bench.background_of(DONE[1:2])
    assert rebuilt.busy(2, ticks_expected=False) == []
    assert rebuilt.resumed == ["p0 anniversary pass at cut 1796601600000"]


def test_differences_name_every_field_with_both_values_in_full(bench: ModuleType) -> None:
    long = "x" * 400
    day = "last_evaluated_day"
    original = (200, {"a": 1, "drops": {day: "2026-12-05"}, "n": [1, 2], "s": long})
    rebuilt = (200, {"a": 1, "drops": {day: "2026-12-06"}, "n": [1, 3], "t": 0})
    assert bench.differences(original, rebuilt) == [
        "[1].drops.last_evaluated_day: original '2026-12-05', rebuilt '2026-12-06'",
        "[1].n[1]: original 2, rebuilt 3",
        f"[1].s: original '{long}', rebuilt (missing)",
        "[1].t: original (missing), rebuilt 0",
    ]
    assert bench.differences(original, original) == []
