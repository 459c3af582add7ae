"""One kind of background work that fails does not stop the others (issue 16, item 6)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.background import Backgrounds


class Work:
    def __init__(self, slices: int, *, fail: bool = False) -> None:
        self.left = slices
        self.fail = fail
        self.runs = 0

    def pending(self, store: Any, partition: int) -> bool:
        return self.left > 0

    def run_slice(self, step: Any) -> None:
        self.runs += 1
        if self.fail:
            raise ValueError("a broken kind of work")
        self.left -= 1


class FakeStep:
    partition = 0
    state = type("State", (), {"store": None})()


def test_a_kind_of_work_that_raised_goes_after_the_others_until_they_are_done() -> None:
    drops, anniversaries = Work(2, fail=True), Work(3)
    background = Backgrounds(drops, anniversaries)
    step: Any = FakeStep()
    with pytest.raises(ValueError):
        background.run_slice(step)  # the engine then suspends, and later tries again
    for _ in range(3):
        background.run_slice(step)
    assert anniversaries.left == 0
    assert drops.runs == 1
    with pytest.raises(ValueError):  # the others done: the broken one is tried again
        background.run_slice(step)
    assert drops.runs == 2
    drops.fail = False
    background.run_slice(step)
    background.run_slice(step)
    assert drops.left == 0 and not background.pending(None, 0)
