"""Hostile input on both input topics (issue #8): the worker never stops, stalls or loses count.

Contract 1.1, 1.2 and 4: no input, however malformed or extreme, stops or stalls a worker;
every usage record is counted under exactly one outcome of ``moments_records_total`` (a
record keyed by something else than its account is counted when it comes back, re-keyed,
on its account's partition); every plan record under one outcome of
``moments_plan_records_total``; every dead letter reaches its ``.dlq`` topic.

Each burst mixes hostile and valid records on ``usage-records`` and ``account-plans``
and ends with one valid *sentinel* usage record per partition: the sentinel counted in
bounded time shows the partition still moves. Then the counters must add up exactly.

Every record carries the outcome class the contract gives it (``invalid``, ``counted``,
``kept``, ``tombstone``, or ``either`` where the contract leaves room), so the number of
dead letters is checked too, within the room the ``either`` records leave.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from agents.usage import key_partition
from domain.common.timeutil import to_rfc3339
from tests.integration.conftest import Stack, Worker, eventually

pytestmark = [pytest.mark.integration, pytest.mark.faults]

T = TypeVar("T")
Expect = Literal["invalid", "counted", "kept", "tombstone", "either"]

PARTITIONS = 2
# A sentinel (and the counters) must move within this after a burst; a healthy worker
# takes a second or two for a burst of a few hundred records, 1 MB ones included.
STALL_S = 60.0
# The broker's default max.message.bytes is 1,048,588: a 1 MB value plus its key fits.
ONE_MB = 1_000_000
DAY_MS = 86_400_000
NOW_MS = int(time.time() * 1000)

ACCOUNTS = [
    "h-0",
    "h-1",
    "h-2",
    "h-\u202eevil-rtl",  # right-to-left override
    "h-\u200f-rlm",  # right-to-left mark
    "h-nul-\x00-inside",
    "h-emoji-\U0001f600\U0001f4a9",
    "h-zwj-\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "h-" + "\U0001f600" * 126,  # 128 code points, 506 UTF-8 bytes
    "h-anchor-max",
    "h-anchor-min",
    "h-tiny-limit",
    "h-huge-limit",
]
PLAN_IDS = ["free", "starter", "growth", "scale", "enterprise"]


def _sentinels() -> list[str]:
    """One sentinel account per partition (by Kafka's default partitioner)."""
    found: dict[int, str] = {}
    for i in range(1000):
        account = f"sentinel-{i}"
        found.setdefault(key_partition(account.encode(), PARTITIONS), account)
        if len(found) == PARTITIONS:
            return [found[p] for p in range(PARTITIONS)]
    raise AssertionError("no sentinel account for some partition")


SENTINELS = _sentinels()


@dataclass(frozen=True, repr=False)
class Item:
    """One record to send, with the outcome class the contract gives it."""

    topic: Literal["usage", "plans"]
    key: bytes | None
    value: bytes | None
    expect: Expect
    label: str

    def __repr__(self) -> str:
        return self.short()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints examples with this: values cut short, not 1 MB of them."""
        printer.text(self.short())

    def short(self) -> str:
        value = None if self.value is None else self.value[:120]
        size = None if self.value is None else len(self.value)
        key = repr(self.key)[:80]
        return f"{self.topic} {self.label} [{self.expect}] key={key} value({size})={value!r}"


def jtext(value: Any) -> str:
    """JSON text of ``value`` (stdlib: integers of any size, non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False)


def obj(fields: dict[str, str]) -> bytes:
    """A JSON object from raw JSON fragments (so 2**70, 1e400 or "\\ud800" stay as written)."""
    return ("{" + ",".join(f"{jtext(k)}:{v}" for k, v in fields.items()) + "}").encode()


def usage_fields(account: str, record_id: str, /, **over: str | None) -> dict[str, str]:
    fields = {
        "record_id": jtext(record_id),
        "account_id": jtext(account),
        "metric": jtext("api_calls"),
        "quantity": "1",
        "timestamp": str(NOW_MS),
    }
    for name, fragment in over.items():
        if fragment is None:
            fields.pop(name, None)
        else:
            fields[name] = fragment
    return fields


def plan_fields(account: str, /, **over: str | None) -> dict[str, str]:
    fields = {
        "account_id": jtext(account),
        "plan_id": jtext("starter"),
        "updated_at": jtext("2026-01-01T00:00:00Z"),
    }
    for name, fragment in over.items():
        if fragment is None:
            fields.pop(name, None)
        else:
            fields[name] = fragment
    return fields


_ids = iter(range(10**9))


def rid(prefix: str = "r") -> str:
    return f"{prefix}-{next(_ids)}-{random.getrandbits(48):x}"  # noqa: S311 - not security


def usage(label: str, expect: Expect, key: bytes | None = b"", **over: str | None) -> Item:
    """A usage record of account h-0 (or ``account_id`` given) with fields replaced."""
    account = json.loads(over["account_id"]) if over.get("account_id") else "h-0"
    if not isinstance(account, str):
        account = "h-0"
    value = obj(usage_fields("h-0", rid(), **over))
    return Item("usage", account.encode() if key == b"" else key, value, expect, label)


def plan(label: str, expect: Expect, account: str = "h-1", **over: str | None) -> Item:
    return Item("plans", account.encode(), obj(plan_fields(account, **over)), expect, label)


NESTED_10K = b"[" * 10_000 + b"]" * 10_000


def named_corpus() -> list[Item]:
    """The hostile records of issue #8, each named, and the plans and usage around them."""
    big = "x" * 500_000
    return [
        # Plans first in the list (the burst is sent in this order, per topic).
        *[plan(f"valid plan of {a!r}", "kept", a, plan_id=jtext("free")) for a in ACCOUNTS[:9]],
        plan(
            "billing_anchor 9999-12-31",
            "kept",
            "h-anchor-max",
            billing_anchor=jtext("9999-12-31T23:59:59Z"),
        ),
        plan(
            "billing_anchor 0001-01-01",
            "kept",
            "h-anchor-min",
            billing_anchor=jtext("0001-01-01T00:00:00Z"),
        ),
        plan("limit 1e-320", "kept", "h-tiny-limit", limits='{"api_calls":1e-320}'),
        plan("limit 1e308", "kept", "h-huge-limit", limits='{"api_calls":1e308}'),
        Item("plans", b"h-1", b"\x00\xff\xfe\x80 not json", "invalid", "arbitrary bytes"),
        Item("plans", b"h-1", b"", "invalid", "empty (not null) value"),
        Item("plans", b"h-gone", None, "tombstone", "tombstone"),
        Item("plans", b"h-1", NESTED_10K, "invalid", "10,000 nested arrays"),
        Item("plans", b"h-1", b'"\\ud800"', "invalid", "JSON string with a lone surrogate"),
        plan("plan_id not in the catalog", "invalid", plan_id=jtext("gold")),
        plan("plan_id of 1 MB", "invalid", plan_id=jtext("p" * ONE_MB)),
        plan("plan_id wrong type", "invalid", plan_id="[1,2]"),
        plan("updated_at missing", "invalid", updated_at=None),
        plan("updated_at not RFC 3339", "invalid", updated_at=jtext("yesterday")),
        plan(
            "updated_at 0001-01-01+01:00", "either", updated_at=jtext("0001-01-01T00:00:00+01:00")
        ),
        plan(
            "updated_at 9999-12-31-23:59", "either", updated_at=jtext("9999-12-31T23:59:59-23:59")
        ),
        plan("account_id wrong type", "invalid", account_id="42"),
        Item("plans", b"", obj(plan_fields("h-1")), "invalid", "empty key"),
        Item("plans", b"h-2", obj(plan_fields("h-1")), "invalid", "key differs from account_id"),
        plan("limit 0 (entry left out)", "kept", limits='{"api_calls":0}'),
        plan("limit -5 (entry left out)", "kept", limits='{"api_calls":-5}'),
        plan("limit of a bad metric name (left out)", "kept", limits='{"API CALLS":5}'),
        plan("limit not a number (left out)", "kept", limits='{"api_calls":"many"}'),
        plan("members -1 (left out)", "kept", members="-1"),
        plan("members 2**70", "kept", members=str(2**70)),
        plan("region empty (left out)", "kept", region=jtext("")),
        plan("region 65 chars (left out)", "kept", region=jtext("r" * 65)),
        plan("status unknown", "either", status=jtext("frozen")),
        plan("valid plan with 500 kB attribute", "kept", attributes=jtext({"blob": big})),
        # Usage.
        Item("usage", b"h-0", b"\x00\xff\xfe\x80garbage", "invalid", "arbitrary bytes"),
        Item("usage", b"h-0", b"", "invalid", "empty (not null) value"),
        Item("usage", b"h-0", None, "invalid", "null value"),
        Item("usage", b"h-0", NESTED_10K, "invalid", "10,000 nested arrays"),
        usage(
            "10,000 nested arrays inside attributes",
            "either",
            attributes='{"a":' + NESTED_10K.decode() + "}",
        ),
        Item("usage", b"h-0", b"[1,2,3]", "invalid", "a JSON array"),
        Item("usage", b"h-0", b"1e400", "invalid", "an infinite JSON number"),
        # Amounts past what an event carries exactly (domain/common/numbers.py) are dead-lettered;
        # a total that would become so depends on the order records meet in: "either".
        usage("quantity 1e20", "either", quantity="1e20"),
        usage("quantity 1e308", "invalid", quantity="1e308"),
        usage(
            "quantity 1.7976931348623157e308 again", "invalid", quantity="1.7976931348623157e308"
        ),
        usage("quantity 1e-320", "invalid", quantity="1e-320"),
        usage("quantity 2**70 as a JSON integer", "invalid", quantity=str(2**70)),
        usage("quantity 10**19 (u64) integer", "either", quantity=str(10**19)),
        usage("quantity 10**19 again (total past 2**64)", "either", quantity=str(10**19)),
        usage("quantity -0.0", "counted", quantity="-0.0"),
        usage("quantity 1e400", "invalid", quantity="1e400"),
        usage("quantity -1e-320", "invalid", quantity="-1e-320"),
        usage("quantity true", "invalid", quantity="true"),
        usage("quantity a string", "invalid", quantity='"12"'),
        usage("quantity null", "invalid", quantity="null"),
        usage("timestamp 2**70", "invalid", timestamp=str(2**70)),
        usage("timestamp 2**64-1", "invalid", timestamp=str(2**64 - 1)),
        usage("timestamp a float", "invalid", timestamp=f"{NOW_MS}.5"),
        usage("timestamp -1", "invalid", timestamp="-1"),
        usage("timestamp 0 (late)", "counted", timestamp="0"),
        usage("timestamp 9999-12-31 (future)", "invalid", timestamp=jtext("9999-12-31T23:59:59Z")),
        usage("timestamp 0001-01-01", "invalid", timestamp=jtext("0001-01-01T00:00:00Z")),
        usage(
            "timestamp with -23:59 offset",
            "counted",
            timestamp=jtext(to_rfc3339(NOW_MS - DAY_MS)[:19] + "-23:59"),
        ),
        usage("record_id 129 chars", "invalid", record_id=jtext("r" * 129)),
        usage("record_id 128 emoji", "counted", record_id=jtext("\U0001f600" * 128)),
        usage("record_id lone surrogate escape", "either", record_id='"\\ud800"'),
        usage("record_id surrogate pair escape", "counted", record_id='"\\ud83d\\ude00-x"'),
        usage("record_id with NUL", "counted", record_id=jtext("a\x00b" + rid())),
        usage("record_id 100 kB", "invalid", record_id=jtext("r" * 100_000)),
        usage("record_id wrong type", "invalid", record_id="[]"),
        usage("account_id wrong type", "invalid", account_id="{}"),
        usage("metric 64 chars", "counted", metric=jtext("m" * 64)),
        usage("metric 65 chars", "invalid", metric=jtext("m" * 65)),
        usage("metric unicode", "invalid", metric=jtext("\u0430pi_calls")),
        usage(
            "every field missing but one",
            "invalid",
            record_id=None,
            metric=None,
            quantity=None,
            timestamp=None,
        ),
        *[
            usage(f"valid usage of {a!r}", "counted", account_id=jtext(a), quantity="600")
            for a in ACCOUNTS
        ],
        *[
            usage(f"1e20 usage of {a!r}", "either", account_id=jtext(a), quantity="1e20")
            for a in ACCOUNTS[9:]
        ],
        usage("re-keyed: arbitrary bytes key", "counted", key=b"\xff\x00\xfe"),
        usage("re-keyed: no key", "counted", key=None),
        usage("re-keyed: key of another account", "counted", key=b"h-1"),
        usage("huge string attribute 500 kB", "counted", attributes=jtext({"blob": big})),
        usage("1 MB valid record", "counted", attributes=jtext({"blob": "y" * (ONE_MB - 200)})),
        usage(
            "1 MB valid record, re-keyed",
            "counted",
            key=b"device-1",
            attributes=jtext({"blob": "z" * (ONE_MB - 200)}),
        ),
        Item("usage", b"h-0", b"\xff" * ONE_MB, "invalid", "1 MB of non-UTF-8 bytes"),
        Item(
            "usage",
            b"h-0",
            b'{"x":"' + b"\\u0001" * (ONE_MB // 6 - 2) + b'"}',
            "invalid",
            "1 MB of escaped control characters (no record_id)",
        ),
    ]


# --- generated records (hypothesis) -----------------------------------------------------

Frag = tuple[str, Expect]  # a JSON fragment and what it makes of an otherwise valid record


def _valid(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Frag]:
    return strategy.map(lambda v: (jtext(v), "counted"))


def _invalid(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Frag]:
    return strategy.map(lambda v: (jtext(v), "invalid"))


_RFC3339_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")
json_values = st.recursive(
    # Finite floats only: json.dumps writes infinity as `Infinity`, which is not JSON at all.
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers()
    | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
wrong_types = json_values.filter(lambda v: not isinstance(v, str))

ID_VALID = _valid(st.text(min_size=1, max_size=128))
ID_INVALID = _invalid(st.just("") | st.text(min_size=129, max_size=400) | wrong_types)
METRIC_VALID = _valid(st.from_regex(r"[a-z0-9_.-]{1,64}", fullmatch=True))
METRIC_INVALID = _invalid(
    st.text(max_size=80).filter(lambda s: not re.fullmatch(r"[a-z0-9_.-]{1,64}", s)) | wrong_types
)
# Whole quantities up to 2**40 always make exact totals (120 of them stay below 2**53); other
# amounts may make a total no event can carry exactly, depending on what else the account got.
QUANTITY_VALID: st.SearchStrategy[Frag] = st.one_of(
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False).map(
        lambda f: (repr(f), "either")
    ),
    st.integers(min_value=0, max_value=2**40).map(lambda i: (str(i), "counted")),
    st.integers(min_value=2**40, max_value=2**90).map(lambda i: (str(i), "either")),
    st.sampled_from(["-0.0", "0"]).map(lambda s: (s, "counted")),
    st.sampled_from(["1e20", str(10**19)]).map(lambda s: (s, "either")),
    st.sampled_from(["1e308", "1e-320", "5e-324", str(2**70), str(2**64 - 1)]).map(
        lambda s: (s, "invalid")
    ),
)
QUANTITY_INVALID: st.SearchStrategy[Frag] = st.one_of(
    st.floats(max_value=-5e-324, allow_nan=False).map(lambda f: (jtext(f), "invalid")),
    st.integers(max_value=-1).map(lambda i: (str(i), "invalid")),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "true", "null", '"1"', "[1]"]).map(
        lambda s: (s, "invalid")
    ),
)
TIMESTAMP_VALID: st.SearchStrategy[Frag] = st.one_of(
    # Up to 4 minutes ahead: the worker's clock is later than ours, its skew allowance 5.
    st.integers(min_value=0, max_value=NOW_MS + 240_000).map(lambda i: (str(i), "counted")),
    st.integers(min_value=0, max_value=NOW_MS).map(lambda i: (jtext(to_rfc3339(i)), "counted")),
)
TIMESTAMP_INVALID: st.SearchStrategy[Frag] = st.one_of(
    st.integers(max_value=-1).map(lambda i: (str(i), "invalid")),
    st.integers(min_value=NOW_MS + 3_600_000, max_value=2**80).map(lambda i: (str(i), "invalid")),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: (repr(f), "invalid")),
    st.text(max_size=40)
    .filter(lambda s: not _RFC3339_LIKE.match(s))
    .map(lambda s: (jtext(s), "invalid")),
    st.sampled_from(["true", "null", "[]", '"9999-12-31T23:59:59Z"']).map(lambda s: (s, "invalid")),
)


def _field(
    valid: st.SearchStrategy[Frag], invalid: st.SearchStrategy[Frag]
) -> st.SearchStrategy[Frag | None]:
    """Mostly valid; sometimes hostile; sometimes missing (None)."""
    return st.one_of(valid, valid, valid, invalid, st.none())


USAGE_FIELDS = ("record_id", "account_id", "metric", "quantity", "timestamp")


@st.composite
def usage_items(draw: st.DrawFn) -> Item:
    """A generated usage record: bytes, a JSON non-object, or a record with hostile fields."""
    kind = draw(st.sampled_from(["record"] * 6 + ["bytes", "json"]))
    if kind == "bytes":
        return Item(
            "usage",
            draw(st.none() | st.binary(max_size=40)),
            draw(st.binary(max_size=300)),
            "invalid",
            "generated bytes",
        )
    if kind == "json":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return Item("usage", b"h-0", jtext(value).encode(), "invalid", "generated JSON non-object")
    account = draw(st.sampled_from(ACCOUNTS) | st.text(min_size=1, max_size=128))
    account_frag: Frag | None = (jtext(account), "counted")
    if draw(st.integers(0, 9)) == 0:
        account_frag = draw(st.one_of(ID_INVALID, st.none()))
    fields: dict[str, Frag | None] = {
        "record_id": draw(_field(ID_VALID | st.just((jtext("dup-1"), "counted")), ID_INVALID)),
        "account_id": account_frag,
        "metric": draw(_field(METRIC_VALID, METRIC_INVALID)),
        "quantity": draw(_field(QUANTITY_VALID, QUANTITY_INVALID)),
        "timestamp": draw(_field(TIMESTAMP_VALID, TIMESTAMP_INVALID)),
    }
    parts = {name: frag[0] for name, frag in fields.items() if frag is not None}
    extra = draw(st.sampled_from(["none", "none", "attributes", "junk", "huge"]))
    if extra == "attributes":
        parts["attributes"] = jtext(
            draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
        )
    elif extra == "junk":
        name = draw(st.text(max_size=10).filter(lambda n: n not in USAGE_FIELDS))
        parts[name] = jtext(draw(json_values))
    elif extra == "huge":
        # At most 6 bytes per character once escaped (\\u0000): under the 1 MB a producer sends.
        size = draw(st.integers(min_value=10_000, max_value=140_000))
        char = draw(st.sampled_from(["x", "\U0001f600", "\u202e", "\x00", "\\"]))
        parts["attributes"] = jtext({"blob": char * size})
    frags = list(fields.values())
    invalid = any(f is None or f[1] == "invalid" for f in frags)
    either = any(f is not None and f[1] == "either" for f in frags)
    key_kind = draw(st.sampled_from(["account"] * 4 + ["none", "bytes", "other"]))
    key: bytes | None = (
        {"account": account.encode(), "none": None, "other": b"device-7"}.get(key_kind)
        if key_kind != "bytes"
        else draw(st.binary(max_size=40))
    )
    return Item(
        "usage",
        key,
        obj(parts),
        "invalid" if invalid else "either" if either else "counted",
        f"generated record ({extra})",
    )


LIMIT_VALID = st.one_of(
    st.floats(min_value=5e-324, allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=1, max_value=2**80).map(str),
)
LIMIT_BAD = st.one_of(
    st.sampled_from(["0", "-0.0", "-1", "true", "null", '"5"', "[]", "-1e308"]),
    st.floats(max_value=0.0, allow_nan=False, allow_infinity=False).map(repr),
)


@st.composite
def plan_items(draw: st.DrawFn) -> Item:
    """A generated account-plans record (never with a null key: the topic is compacted)."""
    kind = draw(st.sampled_from(["record"] * 6 + ["bytes", "tombstone"]))
    account = draw(st.sampled_from(ACCOUNTS[:9]) | st.text(min_size=1, max_size=128))
    if kind == "bytes":
        return Item(
            "plans", account.encode(), draw(st.binary(max_size=300)), "invalid", "generated bytes"
        )
    if kind == "tombstone":
        return Item("plans", account.encode(), None, "tombstone", "generated tombstone")
    expect: Expect = "kept"
    parts = plan_fields(account)
    plan_id = draw(st.sampled_from(PLAN_IDS) | st.text(max_size=20) | wrong_types)
    parts["plan_id"] = jtext(plan_id)
    if plan_id not in PLAN_IDS:
        expect = "invalid"
    stamp = draw(st.integers(min_value=0, max_value=253_402_300_799_999))
    parts["updated_at"] = jtext(to_rfc3339(stamp))
    if draw(st.booleans()):
        parts["billing_anchor"] = jtext(to_rfc3339(draw(st.integers(0, 253_402_300_799_999))))
    if draw(st.booleans()):
        parts["status"] = jtext(draw(st.sampled_from(["active", "paused", "cancelled"])))
    if draw(st.booleans()):
        # Invalid entries are left out and the rest applies (contract 1.2).
        limits = draw(
            st.dictionaries(
                st.sampled_from(["api_calls", "storage_gb", "seats", "events", "API", ""]),
                LIMIT_VALID | LIMIT_BAD,
                max_size=4,
            )
        )
        parts["limits"] = "{" + ",".join(f"{jtext(k)}:{v}" for k, v in limits.items()) + "}"
    if draw(st.booleans()):
        parts["members"] = draw(
            st.integers(min_value=-(2**70), max_value=2**70).map(str)
            | _invalid(json_values).map(lambda f: f[0])
        )
    if draw(st.booleans()):
        parts["region"] = jtext(draw(st.text(max_size=80) | wrong_types))
    if draw(st.integers(0, 9)) == 0:
        parts.pop(draw(st.sampled_from(["account_id", "plan_id", "updated_at"])))
        expect = "invalid"
    key = account.encode()
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.binary(max_size=20))
        if key != account.encode():
            expect = "invalid"
    return Item("plans", key, obj(parts), expect, "generated plan")


# --- the burst, and its accounting -------------------------------------------------------

Counts = dict[str, float]
_SERIES = re.compile(
    r'^(moments_records_total|moments_plan_records_total)\{outcome="(\w+)"\} (\S+)$'
)


async def counters(worker: Worker) -> tuple[Counts, Counts]:
    """(usage outcomes, plan outcomes) from one scrape of /metrics."""
    status, body = await worker.get("/metrics")
    assert status == 200, f"/metrics answered {status}: {body!r:.300}"
    usage_counts: Counts = Counter()
    plan_counts: Counts = Counter()
    for line in str(body).splitlines():
        m = _SERIES.match(line)
        if m:
            target = usage_counts if m.group(1) == "moments_records_total" else plan_counts
            target[m.group(2)] += float(m.group(3))
    return usage_counts, plan_counts


@dataclass
class Hostile:
    """One worker under hostile bursts, and what was sent to it so far."""

    stack: Stack
    worker: Worker
    producer: AIOKafkaProducer
    sentinel_total: int = 0
    usage_sent: int = 0
    plans_sent: int = 0

    def alive(self) -> None:
        proc = self.worker.proc
        assert proc is not None and proc.poll() is None, (
            f"worker exited with {proc.returncode if proc else None}:\n{self.worker.log()}"
        )

    async def burst(self, items: list[Item]) -> None:
        """Send ``items`` at once plus a sentinel per partition; assert they are all accounted."""
        before_usage, before_plans = await counters(self.worker)
        futures = []
        for item in items:
            topic = self.stack.usage_topic if item.topic == "usage" else self.stack.plans_topic
            futures.append(await self.producer.send(topic, key=item.key, value=item.value))
        self.sentinel_total += 1
        for account in SENTINELS:
            record = usage_fields(account, rid("sentinel"))
            futures.append(
                await self.producer.send(
                    self.stack.usage_topic, key=account.encode(), value=obj(record)
                )
            )
        await self.producer.flush()
        for future in futures:
            await future  # a record the broker refused would make the expectations wrong
        usage_items_ = [i for i in items if i.topic == "usage"]
        plan_items_ = [i for i in items if i.topic == "plans"]
        want_usage = len(usage_items_) + len(SENTINELS)
        want_plans = len(plan_items_)

        deadline = time.monotonic() + STALL_S
        while True:
            self.alive()
            totals = [await self.sentinel(a) for a in SENTINELS]
            after_usage, after_plans = await counters(self.worker)
            got_usage = sum(after_usage.values()) - sum(before_usage.values())
            got_plans = sum(after_plans.values()) - sum(before_plans.values())
            if (
                all(t == self.sentinel_total for t in totals)
                and got_usage >= want_usage
                and got_plans >= want_plans
            ):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"stalled: after {STALL_S:.0f}s sentinel totals {totals} "
                    f"(want {self.sentinel_total}), usage counted {got_usage} of {want_usage}, "
                    f"plans counted {got_plans} of {want_plans}\n{self.worker.log()}"
                )
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.0)  # anything counted twice would show by now
        after_usage, after_plans = await counters(self.worker)
        delta_usage = {k: after_usage[k] - before_usage.get(k, 0) for k in after_usage}
        delta_plans = {k: after_plans[k] - before_plans.get(k, 0) for k in after_plans}
        assert sum(delta_usage.values()) == want_usage, delta_usage
        assert sum(delta_plans.values()) == want_plans, delta_plans

        expect_u = Counter(i.expect for i in usage_items_)
        expect_p = Counter(i.expect for i in plan_items_)
        low, high = expect_u["invalid"], expect_u["invalid"] + expect_u["either"]
        assert low <= delta_usage["invalid"] <= high, (
            f"usage dead-lettered {delta_usage['invalid']}, the contract says {low}..{high}: "
            f"{delta_usage}"
        )
        low, high = expect_p["invalid"], expect_p["invalid"] + expect_p["either"]
        assert low <= delta_plans["invalid"] <= high, (
            f"plans dead-lettered {delta_plans['invalid']}, the contract says {low}..{high}: "
            f"{delta_plans}"
        )
        assert delta_plans["tombstone"] == expect_p["tombstone"], delta_plans
        self.usage_sent += want_usage
        self.plans_sent += want_plans
        self.alive()

    async def sentinel(self, account: str) -> float | None:
        status, view = await self.worker.get(f"/accounts/{account}")
        if status != 200 or not view:
            return None
        periods = view["period_totals"].get("api_calls") or []
        return sum(p["total"] for p in periods) if periods else None

    async def dead_letters_match(self) -> None:
        """Every dead letter counted is on its .dlq topic, as valid JSON of the contract's shape."""
        usage_counts, plan_counts = await counters(self.worker)
        for topic, counted in (
            (f"{self.stack.usage_topic}.dlq", usage_counts["invalid"]),
            (f"{self.stack.plans_topic}.dlq", plan_counts["invalid"]),
        ):
            letters = await self.stack.read_all(topic)
            assert len(letters) == counted, (
                f"{topic}: {len(letters)} dead letters, {counted} counted"
            )
            for message in letters:
                letter = orjson.loads(message.value)
                shape = {"error", "topic", "partition", "offset", "raw", "at"}
                if "raw_bytes" in letter:  # a long value, cut at 64 KiB: its real size
                    shape.add("raw_bytes")
                    assert letter["raw_bytes"] > 64 * 1024, letter["raw_bytes"]
                assert set(letter) == shape, letter


async def hostile_worker(stack: Stack) -> Hostile:
    await stack.create_inputs()
    worker = await stack.worker().start().ready()
    producer = await stack.producer()
    for account in SENTINELS:
        await stack.plan(account, "enterprise")

    async def sentinel_plans_counted() -> bool:
        # Before the first burst reads the counters: else these plans, counted during the
        # burst, would count as the burst's own (a race this test lost on a loaded machine).
        _, plans = await counters(worker)
        return plans["applied"] >= len(SENTINELS)

    await eventually(sentinel_plans_counted)
    return Hostile(stack, worker, producer)


def mixed(rng: random.Random, items: Iterable[Item]) -> list[Item]:
    out = list(items)
    rng.shuffle(out)
    return out


async def test_named_hostile_records_on_both_topics(stack: Stack) -> None:
    """The hostile records of issue #8, each once, mixed with valid records of both topics."""
    hostile = await hostile_worker(stack)
    items = named_corpus()
    await hostile.burst(mixed(random.Random(8), items))
    await hostile.dead_letters_match()


async def test_generated_hostile_records_on_both_topics(stack: Stack) -> None:
    """Hypothesis bursts (one per example) of generated hostile and valid records."""
    hostile = await hostile_worker(stack)
    loop = asyncio.get_running_loop()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    # Derandomized: the same examples every run, so the branch is never green or red by
    # chance; no shrinking, which would replay examples against a worker already hurt.
    @settings(
        max_examples=5,
        deadline=None,
        derandomize=True,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(
        usage_batch=st.lists(usage_items(), min_size=20, max_size=120),
        plan_batch=st.lists(plan_items(), min_size=5, max_size=40),
        seed=st.integers(0, 2**32),
    )
    def burst(usage_batch: list[Item], plan_batch: list[Item], seed: int) -> None:
        items = mixed(random.Random(seed), usage_batch + plan_batch)
        for item in items:
            note(item.short())
        run(hostile.burst(items))

    await asyncio.to_thread(burst)
    await hostile.dead_letters_match()
