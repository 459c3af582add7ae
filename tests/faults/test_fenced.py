"""A worker fenced with no rebalance behind it takes its partition back (contract 4).

A transactional producer is fenced when another one starts with its transactional id.
Usually that is the partition's next owner after a rebalance; but the broker also bumps
the epoch when it aborts a transaction that outlived ``transaction.timeout.ms`` (a
worker starved of CPU), and then nobody else owns the partition and no rebalance comes.
Here a producer the test starts with the partition's transactional id plays that part:
the worker must ask the group for a new assignment and carry on, counting every record
once, instead of leaving the partition unprocessed for good.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from agents.usage import key_partition
from tests.integration.conftest import Stack, eventually, total_of

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ACCOUNT = "fenced-acct"


async def test_a_fenced_partition_is_taken_back_and_counts_every_record_once(
    stack: Stack,
) -> None:
    await stack.create_inputs()
    worker = await stack.worker("w1").start().ready()
    await stack.plan(ACCOUNT, "growth")
    await stack.usage(ACCOUNT, "r1", 10)

    async def total_is(want: float) -> bool:
        return total_of(await stack.account(worker, ACCOUNT)) == want

    await eventually(lambda: total_is(10))

    # Fence the worker's producer of the account's partition, as the broker does when it
    # aborts a transaction that timed out: a new producer with the same transactional id.
    partition = key_partition(ACCOUNT.encode(), stack.partitions)
    usurper = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap,
        transactional_id=f"{stack.app_id}-step-{partition}",
    )
    await usurper.start()  # init_transactions: the worker's producer is fenced
    await usurper.stop()
    mark = len(worker.log_path.read_text(errors="replace"))

    await stack.usage(ACCOUNT, "r2", 5)
    await stack.usage(ACCOUNT, "r1", 10)  # a repeat: counted as a duplicate, not again

    await eventually(lambda: total_is(15), timeout=60)
    after = worker.log_path.read_text(errors="replace")[mark:]
    assert f"partition {partition}: fenced" in after, after[-3000:]
    assert "asked the group for a new assignment" in after, after[-3000:]
    await worker.metric_becomes("moments_records_total", 1, outcome="duplicate")
    await worker.metric_becomes("moments_records_total", 2, outcome="accepted")
    status, _ = await worker.get("/readyz")
    assert status == 200
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()
