"""Event records read from a real broker are CloudEvents in binary mode (issue 21, item 1).

A worker announces a threshold, a plan change and a rule's moment; each record, as a
``read_committed`` consumer gets it, is decoded by the CloudEvents SDK's Kafka binding
(``from_binary``): its id, type, source, subject, time and content type are the event's, and
its data is the record's JSON value.
"""

from __future__ import annotations

import time

import pytest

from tests.cloudevents_oracle import assert_event_record
from tests.integration.conftest import Stack, eventually, total_of
from tests.schema import assert_valid

pytestmark = pytest.mark.integration

SOURCE = "https://moments.example.com/it"
ACCOUNT = "acct-ce|1"  # a | is legal in an account id, and in a header


async def test_events_of_three_kinds_decode_as_cloudevents(stack: Stack) -> None:
    await stack.create_inputs()
    worker = await stack.worker(MOMENTS_CLOUDEVENTS_SOURCE=SOURCE).start().ready()
    now = int(time.time() * 1000)
    await stack.plan(ACCOUNT, "starter", updated_at="2026-01-01T00:00:00Z")

    async def planned() -> bool:
        view = await stack.account(worker, ACCOUNT)
        return ((view or {}).get("plan") or {}).get("id") == "starter"

    await eventually(planned)
    # Starter: api_calls 10,000, warned at 80 %; support-heavy: 3 support calls in 7 days.
    await stack.usage(ACCOUNT, "u0", 8_500, timestamp=now)
    for i in range(3):
        await stack.usage(ACCOUNT, f"s{i}", 1, metric="support_calls", timestamp=now)

    async def counted() -> bool:
        return total_of(await stack.account(worker, ACCOUNT)) == 8_500

    await eventually(counted)
    await stack.plan(ACCOUNT, "growth", updated_at="2026-01-02T00:00:00Z")

    kinds = ("threshold-near", "custom.support-heavy", "account-change")
    for kind in kinds:
        [record] = await stack.read(f"{stack.prefix}.{kind}", 1)
        assert record.key == ACCOUNT.encode()
        event = assert_event_record(record.key, record.value, record.headers, SOURCE)
        assert event["kind"] == kind
        assert_valid(event)
