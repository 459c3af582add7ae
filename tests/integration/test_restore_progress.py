"""A restore from a real changelog topic reports its progress in the log.

The reader is driven directly (no worker process) with its progress interval made
short, so a restore of a few tens of thousands of records shows the lines a
production restore of gigabytes shows every 10 s.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.changelogs import ChangelogReader
from state.store import StoreOptions, open_partition
from state.table import TableSpec
from tests.integration.conftest import BOOTSTRAP

pytestmark = pytest.mark.integration

TABLE = TableSpec("counts", "test table")
RECORDS = 40_000
LINE = re.compile(
    r"^restoring partitions \[0\]: (\d+\.\d)% \(([\d,]+) of ([\d,]+)\), [\d,]+/s, "
    r"(about \S+ left|time left unknown)$"
)


async def test_a_restore_logs_percentage_and_estimate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app_id = f"restore-{uuid.uuid4().hex[:8]}"
    topic = TABLE.changelog_topic(app_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20)
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send(topic, key=f"k{i}".encode(), value=b"1", partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            # Small fetches: the restore takes several of them, as a big one does.
            max_partition_fetch_bytes=64 * 1024,
        )

    reader = ChangelogReader(consumer, app_id, [TABLE], lambda: 0)
    reader.progress_every_s = 0.0
    reader.progress_poll_s = 0.005
    store = open_partition(tmp_path, 0, TABLE.columns, StoreOptions(cache_mb=8, write_buffer_mb=1))
    await reader.start()
    try:
        with caplog.at_level(logging.INFO, logger="engine.changelogs"):
            report = await reader.restore({0: store})
    finally:
        await reader.stop()
    assert report.records == {TABLE.name: RECORDS}
    assert store.get(TABLE.name, f"k{RECORDS - 1}".encode()) == b"1"
    store.close()

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("restoring")]
    assert lines, "no progress line"
    figures = []
    for line in lines:
        match = LINE.match(line)
        assert match, line
        figures.append((float(match.group(1)), int(match.group(2).replace(",", ""))))
        assert int(match.group(3).replace(",", "")) == RECORDS, line
    percents = [p for p, _ in figures]
    assert percents == sorted(percents), lines
    assert all(0 <= p <= 100 for p in percents), lines
    assert any(0 < done < RECORDS for _, done in figures), lines
