"""Every compression codec Kafka offers reaches the totals (issue #8, defect 2).

The batches are written by Kafka's own Java producer (``ConsoleProducer
--compression-codec``), so the encoder is independent of the aiokafka decoder under
test. Without a codec's decoder, the worker's fetcher raises ``UnsupportedCodecError``
on the first batch of that codec and the worker stops.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.conftest import BOOTSTRAP, Stack, Worker, eventually, total_of

pytestmark = pytest.mark.integration

KAFKA_LOCAL = Path(__file__).resolve().parents[2] / "scripts" / "kafka-local"
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 20


def _produce(topic: str, codec: str, lines: list[str]) -> None:
    """Send ``key|value`` lines with Kafka's console producer, compressed with ``codec``."""
    done = subprocess.run(
        [
            str(KAFKA_LOCAL),
            "run",
            "kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            BOOTSTRAP,
            "--topic",
            topic,
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=|",
            # ConsoleProducer sets compression.type from this option (default none),
            # overriding any --producer-property compression.type.
            "--compression-codec",
            codec,
            # The lines share a key (one partition): linger so they go as one batch.
            "--producer-property",
            "linger.ms=200",
            "--producer-property",
            "acks=all",
        ],
        input="\n".join(lines) + "\n",
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    # It exits 0 even when a send failed, and logs the failure.
    assert " ERROR " not in done.stderr, done.stderr


def _usage_lines(account: str, codec: str) -> list[str]:
    now_ms = int(time.time() * 1000)
    return [
        account
        + "|"
        + orjson.dumps(
            {
                "record_id": f"{codec}-{i}",
                "account_id": account,
                "metric": "api_calls",
                "quantity": 1,
                "timestamp": now_ms,
            }
        ).decode()
        for i in range(PER_CODEC)
    ]


async def _totals(stack: Stack, worker: Worker, accounts: dict[str, str]) -> dict[str, float]:
    return {
        codec: total_of(await stack.account(worker, account)) or 0.0
        for codec, account in accounts.items()
    }


async def test_every_kafka_codec_is_counted(stack: Stack) -> None:
    await stack.create_inputs()
    worker = await stack.worker().start().ready()
    accounts = {codec: f"acct-{codec}" for codec in CODECS}
    for account in accounts.values():
        await stack.plan(account, "starter")

    await asyncio.gather(
        *(
            asyncio.to_thread(_produce, stack.usage_topic, codec, _usage_lines(account, codec))
            for codec, account in accounts.items()
        )
    )

    want = {codec: float(PER_CODEC) for codec in CODECS}

    async def counted() -> bool:
        assert worker.proc is not None
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.log()}")
        return await _totals(stack, worker, accounts) == want

    try:
        await eventually(counted, timeout=30)
    except AssertionError as err:
        got = await _totals(stack, worker, accounts)
        raise AssertionError(f"totals by codec {got}, want {want}\n{worker.log()}") from err
    accepted = await worker.metric("moments_records_total", outcome="accepted")
    assert accepted == PER_CODEC * len(CODECS)
    status, _ = await worker.get("/healthz")
    assert status == 200
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()
