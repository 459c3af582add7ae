"""Factories shared by the unit tests of the usage path (intake, daily totals)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from domain.common.timeutil import datetime_to_ms
from domain.intake.batch import RawRecord

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def ms(text: str) -> int:
    """Epoch milliseconds of a naive ISO text read as UTC."""
    return datetime_to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


NOW = ms("2026-03-15T12:00:00")


@dataclass
class Raws:
    """Raw usage records as they come off Kafka, with consecutive offsets."""

    topic: str = "usage-records"
    partition: int = 3
    next_offset: int = 100

    def value(self, value: bytes | None, key: bytes | None = b"acct-1") -> RawRecord:
        raw = RawRecord(key, value, self.topic, self.partition, self.next_offset, NOW - 10)
        self.next_offset += 1
        return raw

    def usage(self, key: bytes | None | str = "same", **fields: Any) -> RawRecord:
        """A valid record of acct-1 (an hour ago) unless ``fields`` say otherwise;
        ``key="same"`` keys it by its account id."""
        record: dict[str, Any] = {
            "record_id": f"r-{self.next_offset}",
            "account_id": "acct-1",
            "metric": "api_calls",
            "quantity": 1,
            "timestamp": NOW - HOUR_MS,
        }
        record.update(fields)
        if key == "same":
            key = record["account_id"].encode()
        assert not isinstance(key, str)
        return self.value(orjson.dumps(record), key)
