"""Where steps decide (engine.deciding): off the event loop, one decision at a time, and a
cancelled step never leaves its decision running behind it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from engine.deciding import InlineDecider, ThreadDecider

#: Longest a test waits for something that happens at once (only a broken decider waits).
_WAIT_S = 10.0


@pytest.fixture
def decider() -> Iterator[ThreadDecider]:
    """A thread decider, closed after the test (its thread ended)."""
    opened = ThreadDecider()
    yield opened
    opened.close()


async def test_a_decision_runs_off_the_event_loop_which_keeps_turning_meanwhile(
    decider: ThreadDecider,
) -> None:
    loop_thread = threading.get_ident()
    released = threading.Event()

    def decide() -> int:
        # Only the loop can release it: a decision holding the loop would wait in vain.
        assert released.wait(_WAIT_S), "the loop did not turn while deciding"
        assert threading.get_ident() != loop_thread
        return 42

    async def release() -> None:
        await asyncio.sleep(0)
        released.set()

    releasing = asyncio.ensure_future(release())
    assert await decider.run(decide) == 42
    await releasing


async def test_what_a_decision_raises_reaches_the_step_as_it_is(decider: ThreadDecider) -> None:
    error = ValueError("a record the rules cannot handle")

    def decide() -> None:
        raise error

    with pytest.raises(ValueError) as raised:
        await decider.run(decide)
    assert raised.value is error


async def test_decisions_of_different_partitions_never_overlap(decider: ThreadDecider) -> None:
    running = 0
    most = 0
    order: list[str] = []
    guard = threading.Lock()

    def deciding(name: str, gate: threading.Event) -> None:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        order.append(f"{name} start")
        gate.wait(_WAIT_S)
        order.append(f"{name} end")
        with guard:
            running -= 1

    first_gate, second_gate = threading.Event(), threading.Event()
    first = asyncio.ensure_future(decider.run(lambda: deciding("p0", first_gate)))
    second = asyncio.ensure_future(decider.run(lambda: deciding("p1", second_gate)))
    await asyncio.sleep(0.05)  # the second would have started by now if it could
    second_gate.set()
    first_gate.set()
    await asyncio.gather(first, second)
    assert most == 1
    assert order == ["p0 start", "p0 end", "p1 start", "p1 end"]


async def test_a_cancelled_step_waits_for_its_decision_to_end(decider: ThreadDecider) -> None:
    """The store may be closed once the step is gone: the decision must be over by then."""
    ended = threading.Event()
    started, gate = threading.Event(), threading.Event()

    def decide() -> None:
        started.set()
        gate.wait(_WAIT_S)
        ended.set()

    step = asyncio.ensure_future(decider.run(decide))
    while not started.is_set():
        await asyncio.sleep(0.001)
    step.cancel()
    await asyncio.sleep(0.05)
    assert not step.done()  # still waiting for the decision, cancelled or not
    step.cancel()  # cancelled again (a stop cancels a few times): still waiting
    await asyncio.sleep(0.05)
    assert not step.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert ended.is_set()


async def test_the_inline_decider_decides_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    assert await InlineDecider().run(threading.get_ident) == loop_thread


async def test_a_closed_decider_starts_a_new_thread_when_asked_again(
    decider: ThreadDecider,
) -> None:
    assert await decider.run(lambda: 1) == 1
    decider.close()
    assert await decider.run(lambda: 2) == 2


async def test_a_cancelled_step_whose_decision_has_not_started_leaves_at_once(
    decider: ThreadDecider,
) -> None:
    """Its decision waits behind another partition's: it never runs (the step is abandoned,
    its store may close), and the step does not wait for the decision ahead of it."""
    ran: list[str] = []
    started, gate = threading.Event(), threading.Event()

    def first() -> None:
        started.set()
        gate.wait(_WAIT_S)
        ran.append("first")

    ahead = asyncio.ensure_future(decider.run(first))
    while not started.is_set():
        await asyncio.sleep(0.001)
    queued = asyncio.ensure_future(decider.run(lambda: ran.append("queued")))
    await asyncio.sleep(0.01)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(queued, _WAIT_S)  # not after the decision ahead of it
    assert not gate.is_set()
    gate.set()
    await ahead
    assert await decider.run(lambda: "next") == "next"
    assert ran == ["first"]
