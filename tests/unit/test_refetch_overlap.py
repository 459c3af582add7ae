"""A fetch overlapping records already handed to a step is not processed twice.

After the fence the engine seeks each input to the group's committed offset
(``Ownership.seek_committed``); records fetched before that seek, from the older position,
may still reach a step afterwards, and the fetch from the new position then overlaps them.
``next_offset`` moves only when a step commits, so while the step holding them is in
flight it does not stop the overlap: records below what was handed over are skipped too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import TopicPartition

from tests.fakes.engine import IN, OUT, FakeKafka, messages_to, owned_engine, records

TP = TopicPartition(IN, 0)


async def test_a_refetch_overlapping_records_in_flight_is_not_processed_twice(
    tmp_path: Path, kafka: FakeKafka
) -> None:
    kafka.committed[TP] = 5  # the previous owner's last commit: the fence's seek goes here
    engine, committer, _, _ = await owned_engine(tmp_path, kafka, "A")
    journal = kafka.journal
    parked = asyncio.Event()
    committer.script.append((parked, None))
    # A batch fetched from the older position (0) before the seek, handed over late:
    # 5-7 go to a step, which parks in its commit.
    await engine.submit({TP: records(0, 7)}, 1)
    await journal.until(lambda: journal.of("commit", "A"))
    # The consumer, seeked to 5, fetches 5-9 while that step is in flight.
    await engine.submit({TP: records(5, 9)}, 1)
    async with asyncio.timeout(10):
        while 0 not in engine.scheduler.pending:  # waiting for the parked step to end
            await asyncio.sleep(0)
    parked.set()
    await journal.until(lambda: kafka.committed.get(TP) == 10)
    assert [key for key, _ in messages_to(kafka, OUT)] == [b"k%d" % o for o in range(5, 10)]
