"""The worker's event loop follows MOMENTS_EVENT_LOOP (commands.worker.run.use_event_loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop
from aiokafka.conn import AIOKafkaConnection

from commands.worker.run import use_event_loop


@pytest.fixture
def restored_policy() -> Iterator[None]:
    before = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(before)


@pytest.mark.usefixtures("restored_policy")
@pytest.mark.parametrize(("kind", "loop_type"), [("uvloop", uvloop.Loop), ("asyncio", None)])
def test_loops_made_after_the_choice_are_of_its_kind(kind: str, loop_type: type | None) -> None:
    use_event_loop("asyncio" if kind == "uvloop" else "uvloop")  # the other one first
    use_event_loop(kind)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        if loop_type is None:
            assert not isinstance(loop, uvloop.Loop)
            assert isinstance(loop, asyncio.BaseEventLoop)
        else:
            assert isinstance(loop, loop_type)
        if kind == "uvloop":  # aiokafka's writes to a lost connection fail as on asyncio
            assert getattr(AIOKafkaConnection.send, "_moments_mended", False)
        # A thread's work handed back to the loop (the decide thread's way) completes on it.
        assert loop.run_until_complete(loop.run_in_executor(None, sum, [1, 2, 3])) == 6
    finally:
        loop.close()
