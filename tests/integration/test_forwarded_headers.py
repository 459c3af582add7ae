"""A forwarded or dead-lettered usage record keeps its Kafka headers (contract 1.4).

A binary-mode CloudEvent's attributes travel in ``ce_*`` headers: a record keyed by something
else than its account is forwarded to its account's partition through the re-keyed topic, in
the step's transaction, and must arrive there with every header, in order.
"""

from __future__ import annotations

import time

import orjson
import pytest

from tests.integration.conftest import Stack, eventually, total_of

pytestmark = pytest.mark.integration

HEADERS = [
    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("x-origin", b"\x00\xffbinary"),
    ("x-origin", b"twice"),
]


async def test_a_record_keyed_wrong_is_forwarded_with_its_headers(stack: Stack) -> None:
    await stack.create_inputs()
    worker = await stack.worker().start().ready()
    await stack.plan("acct-h", "starter")
    record = {
        "record_id": "r1",
        "account_id": "acct-h",
        "metric": "api_calls",
        "quantity": 7,
        "timestamp": int(time.time() * 1000),
    }
    producer = await stack.producer()
    await producer.send_and_wait(
        stack.usage_topic, orjson.dumps(record), key=b"not-the-account", headers=HEADERS
    )
    [forwarded] = await stack.read(f"{stack.app_id}-usage-rekeyed", 1)
    assert forwarded.key == b"acct-h"
    assert list(forwarded.headers) == HEADERS

    async def counted() -> bool:
        return total_of(await stack.account(worker, "acct-h")) == 7

    await eventually(counted)


async def test_a_dead_letter_keeps_the_records_headers(stack: Stack) -> None:
    """A dead-lettered binary-mode CloudEvent still says which event it was."""
    await stack.create_inputs()
    await stack.worker().start().ready()
    producer = await stack.producer()
    await producer.send_and_wait(stack.usage_topic, b"{", key=b"acct-h", headers=HEADERS)
    [letter] = await stack.read(f"{stack.usage_topic}.dlq", 1)
    assert orjson.loads(letter.value)["error"].startswith("invalid JSON")
    assert list(letter.headers) == HEADERS
