"""CloudEvents binary-mode headers of the event records, with the SDK as the oracle.

The events are the guide's examples (``scripts/gen-event-examples.py``: the real domain code,
catalog and templates), one or more per kind, a rule's ``custom.<id>`` among them; the headers
are decoded with the CloudEvents SDK's Kafka binding (``from_binary``) and compared with what
the SDK's own ``to_binary`` writes for the same attributes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st

from domain.common.timeutil import parse_rfc3339, to_rfc3339
from domain.wording.cloudevents_out import default_source, event_headers, event_type
from domain.wording.kinds import KINDS
from state import jsonbytes
from tests.cloudevents_oracle import NAMES, assert_event_record, decode
from tests.unit.test_tail import guide_examples

SOURCE = default_source("usage-moments")
EXAMPLES = guide_examples()


def test_the_examples_cover_every_kind_and_a_rule() -> None:
    kinds = {event["kind"] for event in EXAMPLES.values()}
    assert kinds >= set(KINDS)
    assert any(kind.startswith("custom.") for kind in kinds)


@pytest.mark.parametrize("title", list(EXAMPLES))
def test_every_kind_reads_as_a_cloudevent_of_its_json(title: str) -> None:
    event = EXAMPLES[title]
    value = jsonbytes.dumps(event)
    headers = event_headers(event, SOURCE.encode())
    assert assert_event_record(event["account_id"].encode(), value, headers, SOURCE) == event
    assert dict(headers)["ce_type"] == f"com.usage-moments.{event['kind']}".encode()
    assert dict(headers)["ce_time"] == event["emitted_at"].encode()


def test_the_headers_of_a_threshold_hit_and_a_rule_exactly() -> None:
    payload = {
        "event_id": "1ef1b3da",
        "kind": "custom.support-heavy",
        "account_id": "acct-0042",
        "emitted_at": "2026-11-24T15:20:00.387Z",
    }
    assert event_headers(payload, b"/usage-moments/acme") == (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1ef1b3da"),
        ("ce_source", b"/usage-moments/acme"),
        ("ce_type", b"com.usage-moments.custom.support-heavy"),
        ("ce_time", b"2026-11-24T15:20:00.387Z"),
        ("ce_subject", b"acct-0042"),
        ("content-type", b"application/json"),
    )
    assert event_type("threshold-hit") == "com.usage-moments.threshold-hit"


def _sdk_headers(payload: dict[str, Any], source: str) -> dict[str, bytes]:
    """What the SDK's ``to_binary`` writes for the same attributes (no key: no partitionkey)."""
    attributes = {
        "id": payload["event_id"],
        "source": source,
        "type": event_type(payload["kind"]),
        "subject": payload["account_id"],
        "time": parse_rfc3339(payload["emitted_at"]),
        "datacontenttype": "application/json",
    }
    message = to_binary(CloudEvent(attributes, payload), JSONFormat(), lambda _: None)
    return message.headers


KIND = st.sampled_from(KINDS) | st.from_regex(r"custom\.[a-z0-9-]{1,40}", fullmatch=True)
# Account ids are any text but control characters (contract 1.1); ``|`` and non-ASCII included.
ACCOUNT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=64).filter(
    lambda text: text.strip() == text
)
INSTANT = st.integers(0, 4_102_444_800_000)  # 1970 to 2100, in ms
SOURCES = st.sampled_from(
    [SOURCE, "https://acme.example/moments", "urn:acme:moments", "/a/b?c=d#e"]
)


@given(kind=KIND, account=ACCOUNT, at_ms=INSTANT, source=SOURCES)
def test_our_headers_are_the_sdks_but_for_the_times_spelling(
    kind: str, account: str, at_ms: int, source: str
) -> None:
    payload = {
        "event_id": f"{at_ms:064x}",
        "kind": kind,
        "account_id": account,
        "emitted_at": to_rfc3339(at_ms),
    }
    ours = event_headers(payload, source.encode())
    assert tuple(name for name, _ in ours) == NAMES
    sdk = _sdk_headers(payload, source)
    assert set(sdk) == set(NAMES)
    assert {n: v for n, v in ours if n != "ce_time"} == {
        n: v for n, v in sdk.items() if n != "ce_time"
    }
    # The SDK writes microseconds (.250000Z); ours is emitted_at as the JSON has it, the same
    # instant.
    value = jsonbytes.dumps(payload)
    time = decode(account.encode(), value, ours).get_time()
    assert time == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=at_ms)
    assert assert_event_record(account.encode(), value, ours, source) == payload
