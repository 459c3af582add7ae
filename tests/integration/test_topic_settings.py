"""Topic settings checked at start, not only applied at creation (issue 16, item 10).

Raising ``MOMENTS_DEDUP_HORIZON`` used to leave the dedup changelog at its old retention, so
a rebuilt worker missed record_ids of the horizon and counted repeats again. At start the
worker now raises the retention (it only keeps more), sets a table changelog back to
compaction, and refuses to start, with one line naming the topic and the setting, where it
must not change a setting itself.
"""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tables.accounts import ACCOUNTS
from tables.dedup import dedup_table
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


async def _create(stack: Stack, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, stack.partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _settings(stack: Stack, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    [resource] = response.resources
    return {entry[0]: entry[1] for entry in resource[4]}


async def test_a_longer_dedup_horizon_raises_the_changelog_retention(stack: Stack) -> None:
    await stack.create_inputs()
    # Created by a worker with a one-day horizon (two days' retention), and a table
    # changelog someone set to delete old records.
    dedup = dedup_table(DAY_MS).changelog_topic(stack.app_id)
    accounts = ACCOUNTS.changelog_topic(stack.app_id)
    await _create(stack, dedup, {"cleanup.policy": "delete", "retention.ms": str(2 * DAY_MS)})
    await _create(
        stack,
        accounts,
        {
            "cleanup.policy": "delete",
            "retention.ms": str(3 * DAY_MS),
            "max.message.bytes": "2000000",
        },
    )
    worker = await stack.worker(MOMENTS_DEDUP_HORIZON="7d").start().ready()

    dedup_settings = await _settings(stack, dedup)
    assert dedup_settings["retention.ms"] == str(8 * DAY_MS)  # the horizon plus a day
    assert dedup_settings["cleanup.policy"] == "delete"
    assert dedup_settings["retention.bytes"] == "-1"  # not the broker's cap either
    accounts_settings = await _settings(stack, accounts)
    assert accounts_settings["cleanup.policy"] == "compact"
    # The topic's other settings are kept (AlterConfigs replaces them all at once).
    assert accounts_settings["max.message.bytes"] == "2000000"
    assert accounts_settings["retention.ms"] == str(3 * DAY_MS)
    log = worker.log_path.read_text()
    assert f"topic {dedup}: raised retention.ms from {2 * DAY_MS} to {8 * DAY_MS}" in log
    assert f"topic {accounts}: set cleanup.policy=compact (was delete)" in log


async def test_a_size_limit_on_the_dedup_changelog_stops_the_worker_with_one_line(
    stack: Stack,
) -> None:
    await stack.create_inputs()
    dedup = dedup_table(7 * DAY_MS).changelog_topic(stack.app_id)
    await _create(
        stack,
        dedup,
        {"cleanup.policy": "delete", "retention.ms": str(8 * DAY_MS), "retention.bytes": "1048576"},
    )
    worker = stack.worker().start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=60) == 2
    lines = [line for line in worker.log_path.read_text().splitlines() if "retention.bytes" in line]
    assert len(lines) == 1, lines
    assert f"{dedup} has retention.bytes=1048576" in lines[0]
    assert f"set retention.bytes=-1 on {dedup}" in lines[0]
