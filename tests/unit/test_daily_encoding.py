"""The daily values keep their printed days between writes (:class:`DailyTotals` in its
stored form, :class:`DailyReadings`' printed cells): after any sequence of additions,
folds, prunes, copies and writes, the bytes written are those of an independent model of
the days, printed afresh."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intake.daily import AccountDaily
from state import jsonbytes

DAY = 86_400_000
METRICS = {"calls": "sum", "peak": "max", "level": "latest"}

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("fold"),
            st.sampled_from(sorted(METRICS)),
            st.integers(20_000 * DAY, 20_040 * DAY),
            st.decimals(0, 1000, places=2),
        ),
        st.tuples(st.just("prune"), st.integers(19_995, 20_045)),
        st.tuples(st.just("write")),
        st.tuples(st.just("reload")),
        st.tuples(st.just("copy")),
    ),
    max_size=60,
)


class Model:
    """The days of each metric as plain dicts, printed as the contract's JSON shape."""

    def __init__(self) -> None:
        self.days: dict[str, dict[int, Any]] = {m: {} for m in METRICS}
        self.first: dict[str, int] = {}
        self.active: dict[str, int] = {}
        self.carry: tuple[int, Decimal] | None = None

    def fold(self, metric: str, ts_ms: int, quantity: Decimal) -> None:
        day = ts_ms // DAY
        self.first[metric] = min(self.first.get(metric, day), day)
        if quantity > 0:
            self.active[metric] = max(self.active.get(metric, ts_ms), ts_ms)
        days = self.days[metric]
        kind = METRICS[metric]
        if kind == "sum":
            if quantity > 0:
                days[day] = days.get(day, Decimal(0)) + quantity
        elif kind == "max":
            if day not in days or quantity > days[day]:
                days[day] = quantity
        elif day not in days or ts_ms >= days[day][0]:
            days[day] = (ts_ms, quantity)

    def prune(self, oldest: int) -> None:
        for metric, days in self.days.items():
            old = [d for d in days if d < oldest]
            if metric == "level" and old:
                latest = max(days[d] for d in old)
                if self.carry is None or latest[0] >= self.carry[0]:
                    self.carry = latest
            for d in old:
                del days[d]

    def encoded(self) -> bytes:
        out: dict[str, Any] = {}
        for metric in self.first:  # in the order metrics first came, as the value keeps them
            kind = METRICS[metric]
            value: dict[str, Any] = {} if kind == "sum" else {"k": kind}
            value["f"] = self.first[metric]
            if metric in self.active:
                value["a"] = self.active[metric]
            days = sorted(self.days[metric].items())
            if days and kind == "latest":
                value["d"] = {str(d): [ts, str(q)] for d, (ts, q) in days}
            elif days:
                value["d"] = {str(d): str(q) for d, q in days}
            if kind == "latest" and self.carry is not None:
                value["c"] = [self.carry[0], str(self.carry[1])]
            out[metric] = value
        return orjson.dumps({"m": out})


@settings(max_examples=300)
@given(ops)
def test_written_days_are_the_models_printed_afresh(steps: list[tuple[Any, ...]]) -> None:
    daily, model = AccountDaily(), Model()
    written: list[tuple[dict[str, Any], bytes]] = []
    for op, *args in steps:
        if op == "fold":
            metric, ts_ms, quantity = args
            kind = METRICS[metric]
            aggregation = "sum" if kind == "sum" else kind
            daily.fold(metric, aggregation, ts_ms, quantity)
            model.fold(metric, ts_ms, quantity)
        elif op == "prune":
            with_old = {m for m in daily.metrics if any(d < args[0] for d in model.days[m])}
            for metric, history in daily.metrics.items():
                assert history.has_days_before(args[0]) == (metric in with_old)
            told: list[str] = []
            daily.watcher = lambda _, metric, told=told: told.append(metric)
            assert daily.prune(args[0]) == bool(with_old)
            daily.watcher = None
            assert sorted(told) == sorted(with_old)  # told before each changed metric
            model.prune(args[0])
        elif op == "write":
            data = daily.to_json()
            written.append((data, jsonbytes.dumps(data)))
            assert written[-1][1] == model.encoded()
        elif op == "reload":
            daily = AccountDaily.from_json(orjson.loads(jsonbytes.dumps(daily.to_json())))
        else:
            held = daily
            daily = AccountDaily({m: d.copy() for m, d in held.metrics.items()})
            # The original goes on its own way: it must not see the copy's changes.
            before = jsonbytes.dumps(held.to_json())
            daily.fold("calls", "sum", 20_041 * DAY, Decimal(1))
            model.fold("calls", 20_041 * DAY, Decimal(1))
            assert jsonbytes.dumps(held.to_json()) == before
    assert jsonbytes.dumps(daily.to_json()) == model.encoded()
    # What a write returned is not changed by what came after it (shared, copied on change).
    assert [orjson.dumps(data) for data, _ in written] == [held for _, held in written]
