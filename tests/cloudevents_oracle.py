"""The CloudEvents Python SDK as the oracle of our event records' binary-mode headers.

Every test that checks an event record (unit, functional, integration) decodes it with the
SDK's Kafka binding (``cloudevents.core.bindings.kafka.from_binary``), as a CloudEvents-aware
consumer would, and checks its attributes against the record's own JSON value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from domain.common.timeutil import parse_rfc3339

NAMES = (
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "content-type",
)


def decode(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> BaseCloudEvent:
    """The CloudEvent of a Kafka record, as the SDK reads it (binary mode)."""
    names = [name for name, _ in headers]
    # The SDK keeps headers in a dict: a repeated one would silently win.
    assert len(names) == len(set(names)), names
    return from_binary(KafkaMessage(dict(headers), key, value), JSONFormat())


def assert_event_record(
    key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]], source: str
) -> dict[str, Any]:
    """Check that the record is a binary-mode CloudEvent of its own JSON value; return the
    value parsed."""
    assert tuple(name for name, _ in headers) == NAMES
    payload: dict[str, Any] = orjson.loads(value)
    event = decode(key, value, headers)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == payload["event_id"]
    assert event.get_source() == source
    assert event.get_type() == f"com.usage-moments.{payload['kind']}"
    assert event.get_subject() == payload["account_id"]
    assert event.get_time() == parse_rfc3339(payload["emitted_at"])
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == payload
    assert event.get_dataschema() is None
    return payload


def event_payloads(messages: Sequence[Any], source: str) -> list[dict[str, Any]]:
    """The payloads of a step's queued event messages ``(key, value, headers)``, each checked
    as a CloudEvent first."""
    return [assert_event_record(*message, source=source) for message in messages]
