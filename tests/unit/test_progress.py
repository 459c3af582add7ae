"""Progress lines of long waits (engine.progress), with an injected clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.progress import BacklogWatch, Progress, await_with_progress, duration_text


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_line_at_most_every_ten_seconds_with_percentage_and_estimate() -> None:
    clock = Clock()
    progress = Progress("restoring partitions [0]", clock)
    clock.t += 5
    assert progress.update(500, 9500) is None  # too soon
    clock.t += 5
    line = progress.update(1000, 9000)
    assert line == "restoring partitions [0]: 10.0% (1,000 of 10,000), 100/s, about 1m30s left"
    clock.t += 9.9
    assert progress.update(1990, 8010) is None
    clock.t += 0.1
    assert progress.update(2000, 8000) is not None


def test_the_estimate_follows_the_rate_over_the_whole_wait() -> None:
    clock = Clock()
    progress = Progress("x", clock)
    clock.t += 20
    progress.update(2000, 2000)  # 100/s
    assert progress.eta_s() == pytest.approx(20.0)
    assert progress.percent == pytest.approx(50.0)


def test_nothing_done_yet_gives_no_estimate() -> None:
    clock = Clock()
    progress = Progress("x", clock)
    clock.t += 10
    line = progress.update(0, 100)
    assert line is not None and "time left unknown" in line
    assert progress.eta_s() is None


def test_nothing_to_do_is_complete() -> None:
    progress = Progress("x", Clock())
    progress.update(0, 0)
    assert progress.percent == 100.0
    assert progress.eta_s() == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42.4, "42s"), (75, "1m15s"), (3700, "1h01m")]
)
def test_durations_read_well(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_a_backlog_is_announced_followed_and_closed() -> None:
    clock = Clock()
    watch = BacklogWatch(clock, min_lag=1000)
    assert watch.observe(1, processed=0, lag=999) is None  # not a backlog
    assert watch.observe(1, processed=0, lag=5000) == "catching up a backlog of 5,000 records"
    clock.t += 5
    assert watch.observe(1, processed=1000, lag=4000) is None
    clock.t += 5
    line = watch.observe(1, processed=2000, lag=3000)
    assert line is not None and line.startswith("catching up a backlog: 40.0% (2,000 of 5,000)")
    assert "200/s, about 15s left" in line
    clock.t += 3
    assert watch.observe(1, processed=5000, lag=0) == "backlog caught up: 5,000 records in 13s"
    assert watch.observe(1, processed=5000, lag=0) is None


def test_a_new_assignment_counts_anew() -> None:
    clock = Clock()
    watch = BacklogWatch(clock, min_lag=1000)
    watch.observe(1, processed=0, lag=5000)
    assert watch.observe(2, processed=100, lag=50) is None  # reset, and no backlog now
    assert watch.observe(2, processed=100, lag=2000) == "catching up a backlog of 2,000 records"


async def test_await_with_progress_logs_while_waiting(caplog: pytest.LogCaptureFixture) -> None:
    done = 0

    async def work() -> str:
        nonlocal done
        for _ in range(5):
            await asyncio.sleep(0.01)
            done += 10
        return "finished"

    progress = Progress("waiting", asyncio.get_running_loop().time, every_s=0.0)
    with caplog.at_level(logging.INFO):
        result = await await_with_progress(
            work(), progress, lambda: (done, 50 - done), logging.getLogger("t"), poll_s=0.005
        )
    assert result == "finished"
    assert any(r.getMessage().startswith("waiting: ") for r in caplog.records)


async def test_await_with_progress_cancels_what_it_waits_for() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    progress = Progress("x", asyncio.get_running_loop().time)
    task = asyncio.ensure_future(
        await_with_progress(forever(), progress, lambda: (0, 1), logging.getLogger("t"))
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
