"""The tick scheduler survives the engine stopping (or a partition being revoked)
while one of its checks awaits Kafka.

Regression: a SIGTERM landing during a check closed the stores of the partitions the
check had not reached yet; reading the next one raised KeyError, the app crashed and
the worker exited 1 instead of 0 (seen in tests/integration/test_deploy_fleet.py,
2 runs in 7). Fakes stand in for the engine and Kafka: only the scheduler's own logic
is under test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from agents.ticks import TickScheduler


class ClosableStore:
    """Like PartitionStore after close(): every table lookup raises KeyError."""

    def __init__(self) -> None:
        self.closed = False

    def get(self, table: str, key: bytes) -> bytes | None:
        if self.closed:
            raise KeyError(table)
        return None


@dataclass
class Owned:
    store: ClosableStore = field(default_factory=ClosableStore)
    ready: bool = True
    plans_caught_up: bool = True


class StoppingEngine:
    """An engine that stops (closing and dropping every store) during the first await."""

    def __init__(self, partitions: int) -> None:
        self.owned: dict[int, Owned] = {p: Owned() for p in range(partitions)}
        self.reader = self
        self.stopped = False

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        if not self.stopped:  # what Engine.stop() does, at an await of the check
            self.stopped = True
            for o in self.owned.values():
                o.store.closed = True
            self.owned.clear()
        return {tp: 0 for tp in tps}

    async def caught_up(self, tp: Any, target: int) -> bool:
        return True


class Producer:
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, *_: Any) -> None:
        self.sent.append(partition)


def runtime(producer: Producer) -> Any:
    settings = SimpleNamespace(
        drop_grace_s=900.0,
        late_grace_s=3600.0,
        topic_usage="usage",
        topic_rekey="rekeyed",
        topic_ticks="ticks",
    )
    clock = SimpleNamespace(now_ms=lambda: int(time.time() * 1000))
    return SimpleNamespace(
        settings=settings,
        catalog=SimpleNamespace(period="month"),
        clock=clock,
        app=SimpleNamespace(producer=producer),
    )


async def test_a_check_interrupted_by_the_engine_stopping_skips_the_closed_partitions() -> None:
    engine = StoppingEngine(partitions=4)
    producer = Producer()
    scheduler = TickScheduler(runtime(producer), engine)  # type: ignore[arg-type]
    await scheduler.check()  # raised KeyError('evaluations') before the fix
    # The first partition's tick was already under way; no other partition's went out.
    assert producer.sent == []
    assert engine.stopped


async def test_a_check_with_nothing_stopping_sends_every_partitions_tick() -> None:
    # The same fakes, no stop: the guard must not skip live partitions.
    engine = StoppingEngine(partitions=3)
    engine.stopped = True  # end_offsets then does nothing
    producer = Producer()
    scheduler = TickScheduler(runtime(producer), engine)  # type: ignore[arg-type]
    await scheduler.check()
    assert producer.sent == [0, 1, 2]
