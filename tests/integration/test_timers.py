"""Timers on time (issue 19) end to end: a movable worker clock, real broker, real RocksDB.

A billing period ending at an odd second is announced once it is final (end + late grace), with
the worker's clock standing still three seconds later: not at the next whole hour as before the
due index. A birthday comes at its day's start, and a plan record arriving on the day makes it
due at once. A worker with an empty data directory, restored from the changelogs, repeats none
of them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Stack, eventually
from tests.integration.test_anniversaries import (
    anniversaries,
    clock_env,
    move_clock,
    passes_complete,
)
from tests.schema import assert_valid

pytestmark = pytest.mark.integration


async def birthdays(stack: Stack, *, settle_s: float = 2.0) -> list[dict[str, Any]]:
    messages = await stack.read_all(f"{stack.prefix}.birthday", settle_s=settle_s)
    events = [orjson.loads(m.value) for m in messages]
    for message, event in zip(messages, events, strict=True):
        assert_valid(event)
        assert message.key.decode() == event["account_id"]
    return events


def birthday_id(account: str, day: str) -> str:
    return hashlib.sha256(f"birthday|{account}|{day}".encode()).hexdigest()


async def test_an_odd_second_period_end_and_a_birthday_come_on_time_exactly_once(
    stack: Stack,
) -> None:
    await stack.create_inputs()
    # The period Oct 15 23:40:37 - Nov 15 23:40:37 is final at Nov 16 00:40:37 (1 h grace).
    await stack.plan("odd", "starter", billing_anchor="2026-10-15T23:40:37Z")
    await stack.plan("bday", "starter", billing_anchor="2026-11-05T00:00:00Z", birth_date="--11-16")
    start = "2026-11-15T23:00:00Z"
    worker = await stack.worker("w1", **clock_env(start)).start().ready()
    await passes_complete(stack, worker, start)  # the first pass builds the due index
    assert await anniversaries(stack, settle_s=1.0) == []
    assert await birthdays(stack, settle_s=0.5) == []

    # Three seconds after the period became final (and 40 minutes into Nov 16): both due.
    now = "2026-11-16T00:40:40Z"
    await move_clock(worker, now)
    await passes_complete(stack, worker, now, ["odd", "bday"])
    [anniversary] = await anniversaries(stack)
    assert anniversary["account_id"] == "odd"
    assert anniversary["period"]["end"] == "2026-11-15T23:40:37Z"
    [birthday] = await birthdays(stack)
    assert birthday["account_id"] == "bday"
    assert birthday["event_id"] == birthday_id("bday", "2026-11-16")
    assert birthday["birthday"] == {"day": "2026-11-16"}
    # The shipped catalog's [offers] birthday.
    assert birthday["suggestion"]["action"] == "offer"
    assert birthday["suggestion"]["offer"] == "a free month on us"
    assert worker.stop() == 0

    # Another worker, empty data directory, later the same day: restored from the changelogs,
    # it repeats nothing. A plan record arriving on its birthday is due at once: its event
    # shows the worker's passes ran.
    later = "2026-11-16T12:00:00Z"
    again = await stack.worker("w2", **clock_env(later)).start().ready()
    await stack.plan(
        "late", "starter", billing_anchor="2026-11-05T00:00:00Z", birth_date="1990-11-16"
    )

    async def applied() -> bool:
        return await stack.account(again, "late") is not None

    # A pass runs only when the clock passed the last one's cut (a manual clock stands still):
    # move it once the plan is applied.
    await eventually(applied, timeout=60)
    await move_clock(again, "2026-11-16T12:00:05Z")

    async def late_celebrated() -> bool:
        return any(e["account_id"] == "late" for e in await birthdays(stack, settle_s=0.2))

    await eventually(late_celebrated, timeout=60)
    events = await birthdays(stack)
    assert sorted(e["account_id"] for e in events) == ["bday", "late"]
    assert len(await anniversaries(stack)) == 1
    assert await again.metric("moments_events_total", kind="birthday") == 1
    assert await again.metric("moments_events_total", kind="billing-anniversary") == 0
    assert again.stop() == 0
