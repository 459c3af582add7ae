"""Where an account's records belong (contract 1.2): Kafka's murmur2, as the Java client.

Issue 16, item 10: records placed by another partitioner (librdkafka's CRC32 default) were
judged where they landed. The intake now tells them apart so the handlers forward them.
"""

from __future__ import annotations

import dataclasses
import zlib

import orjson
import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from domain.intake.batch import IntakeResult, IntakeState, RawRecord, run_intake
from domain.intake.partitioning import (
    account_partition,
    forwarded_tombstone,
    forwarded_tombstone_at,
    key_partition,
    murmur2,
)
from domain.intake.usage import AccountTotals
from tests.unit.factories import NOW, Raws
from tests.unit.test_intake import CATALOG, RULES

# org.apache.kafka.common.utils.UtilsTest#testMurmur2: the Java client's own vectors.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
@pytest.mark.parametrize("partitions", [1, 2, 8, 12, 1000])
def test_partitions_are_the_java_clients(key: bytes, java: int, partitions: int) -> None:
    # Utils.toPositive(murmur2(key)) % numPartitions, as BuiltInPartitioner does.
    assert key_partition(key, partitions) == (java & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
def test_murmur2_is_the_java_clients(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF  # Java's int, read unsigned


@given(st.binary(max_size=600))
def test_murmur2_is_aiokafkas(key: bytes) -> None:
    # The oracle: aiokafka's byte-by-byte port of Utils.murmur2 (what the worker used before
    # issue 20); keys past 256 bytes take the word-by-word loop.
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.text(min_size=1, max_size=64), st.integers(1, 64))
def test_an_accounts_partition_is_its_keys(account: str, partitions: int) -> None:
    assert account_partition(account, partitions) == key_partition(account.encode(), partitions)


@given(st.integers(-(2**63), 2**63 - 1))
def test_a_forwarded_tombstone_carries_its_time(timestamp_ms: int) -> None:
    assert forwarded_tombstone_at(forwarded_tombstone(timestamp_ms)) == timestamp_ms


@pytest.mark.parametrize(
    "value",
    [
        b'{"account_id":"a","plan_id":"free","updated_at":"2026-01-01T00:00:00Z"}',
        b'{"forwarded_tombstone_ms":1,"account_id":"a"}',
        b'{"forwarded_tombstone_ms":"1"}',
        b"",
    ],
)
def test_a_plan_record_is_no_forwarded_tombstone(value: bytes) -> None:
    assert forwarded_tombstone_at(value) is None


def _run(*raws: RawRecord, partitions: int) -> IntakeResult:
    return run_intake(
        raws,
        IntakeState(
            plan_of=lambda _: None, totals_of=lambda _: AccountTotals(), seen_at=lambda _: None
        ),
        now_ms=NOW,
        rules=dataclasses.replace(RULES, partitions=partitions),
        catalog=CATALOG,
    )


def test_a_record_keyed_right_on_another_partition_is_misplaced_not_judged() -> None:
    partitions = 8
    home = account_partition("acct-1", partitions)
    away = Raws(partition=(home + 1) % partitions).usage()
    there = Raws(partition=home).usage()
    result = _run(away, there, partitions=partitions)
    assert result.misplaced == [("acct-1", away)]
    # Either order: an account found right once is still checked on another partition.
    assert _run(there, away, partitions=partitions).misplaced == [("acct-1", away)]
    assert result.rekey == []
    assert sum(result.outcomes.values()) == 1  # only ``there``


def test_librdkafkas_default_partitioner_misplaces_most_accounts() -> None:
    """Why it matters: CRC32 (librdkafka's consistent_random) agrees with murmur2 about as
    often as chance would have it."""
    accounts = [f"acct-{i}" for i in range(1000)]
    same = sum(zlib.crc32(a.encode()) % 8 == account_partition(a, 8) for a in accounts)
    assert same < 250


def test_a_misplaced_record_value_is_forwarded_as_it_came() -> None:
    raw = Raws(partition=0).usage()
    partitions = 2
    if account_partition("acct-1", partitions) == 0:
        raw = dataclasses.replace(raw, partition=1)
    result = _run(raw, partitions=partitions)
    [(account, forwarded)] = result.misplaced
    assert orjson.loads(forwarded.value)["account_id"] == account == "acct-1"
