"""The engine's garbage-collector policy: off while steps run, never left off after one."""

from __future__ import annotations

import asyncio

import pytest

from engine.collector import Collector


class FakeGc:
    """Stands in for :mod:`gc`: a switch, counts the test sets, and the collections asked."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.count = (0, 0, 0)
        self.threshold = (10, 10, 10)
        self.collected: list[int] = []

    def isenabled(self) -> bool:
        return self.enabled

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def get_count(self) -> tuple[int, int, int]:
        return self.count

    def get_threshold(self) -> tuple[int, int, int]:
        return self.threshold

    def collect(self, generation: int = 2) -> int:
        self.collected.append(generation)
        return 0


def test_a_step_turns_automatic_collection_off_and_back_on() -> None:
    fake = FakeGc()
    collector = Collector(fake)
    with collector.step():
        assert not fake.enabled
    assert fake.enabled
    assert fake.collected == []


def test_a_step_that_raised_leaves_collection_on() -> None:
    fake = FakeGc()
    collector = Collector(fake)
    with pytest.raises(RuntimeError), collector.step():
        raise RuntimeError("the step failed")
    assert fake.enabled
    assert collector.depth == 0


def test_overlapping_steps_turn_it_on_when_the_last_one_ends() -> None:
    fake = FakeGc()
    collector = Collector(fake)
    first, second = collector.step(), collector.step()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not fake.enabled  # the second is still in flight
    second.__exit__(None, None, None)
    assert fake.enabled


def test_a_cancelled_step_task_leaves_collection_on() -> None:
    fake = FakeGc()
    collector = Collector(fake)

    async def step(started: asyncio.Event) -> None:
        with collector.step():
            started.set()
            await asyncio.Event().wait()  # for ever

    async def main() -> None:
        started = asyncio.Event()
        tasks = [asyncio.ensure_future(step(started)) for _ in range(3)]
        await started.wait()
        await asyncio.sleep(0)
        assert not fake.enabled
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert fake.enabled
    assert collector.depth == 0


def test_collection_off_before_the_steps_stays_off() -> None:
    fake = FakeGc(enabled=False)
    collector = Collector(fake)
    with collector.step():
        fake.count = (1000, 100, 100)
        collector.tend()
    assert not fake.enabled
    assert fake.collected == []  # whoever turned it off meant it


def test_while_steps_overlap_the_valve_collects_the_generation_due() -> None:
    fake = FakeGc()
    collector = Collector(fake, valve=5)
    with collector.step():
        fake.count = (49, 0, 0)
        collector.tend()
        assert fake.collected == []  # under 5 young thresholds
        fake.count = (50, 0, 0)
        collector.tend()
        fake.count = (50, 10, 0)
        collector.tend()
        fake.count = (50, 10, 10)
        collector.tend()
        with collector.step():  # another step in flight meanwhile
            pass
        assert not fake.enabled
    assert fake.collected == [0, 1, 2, 2]  # the inner step's end collected too
    assert collector.collections == 4


def test_between_steps_automatic_collection_does_the_work() -> None:
    fake = FakeGc()
    collector = Collector(fake, valve=1)
    fake.count = (1000, 100, 100)
    collector.tend()
    assert fake.collected == []
