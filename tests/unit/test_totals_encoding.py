"""Period totals and lifetime values keep their printed parts between writes
(:meth:`AccountTotals.encoded`, :meth:`AccountLifetime.encoded`): after any sequence of
additions, folds, undos, prunes, gauge drops, reloads and writes, the bytes written are
those of an independent model of the cells printed afresh by orjson, and those of
``to_json`` encoded as before (the store's and changelog's format)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.intake.lifetime import AccountLifetime
from domain.intake.usage import CARRY_KEY, AccountTotals, Change
from domain.plans.catalog import Milestones
from domain.plans.periods import Period
from state import jsonbytes

DAY_MS = 86_400_000
BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
# Names orjson must escape, or prints as UTF-8, next to plain ones.
METRICS = ("api_calls", "seats", 'q"uo\\te', "Größe\n")
PERIODS = [Period.from_ms(BASE_MS + n * DAY_MS, BASE_MS + (n + 2) * DAY_MS) for n in range(5)]

quantities = st.one_of(
    st.decimals(-1000, 10**6, places=3),
    st.decimals(allow_nan=False, allow_infinity=False),  # any exponent: 1E+3, 0E-7, -0
)

folds = st.tuples(
    st.sampled_from(("add", "sum", "max", "latest")),
    st.sampled_from(METRICS),
    st.integers(0, len(PERIODS) - 1),
    quantities,
    st.integers(BASE_MS, BASE_MS + 8 * DAY_MS),
    # undone right after (a record refused after all), or written and then undone
    st.sampled_from(("keep", "keep", "undo", "write, undo")),
)
totals_ops = st.lists(
    st.one_of(  # half of the steps folds, the other half the rest
        folds,
        st.one_of(
            st.tuples(st.just("write")),
            st.tuples(st.just("prune"), st.integers(0, 8)),
            st.tuples(st.just("keep_gauges"), st.frozensets(st.sampled_from(METRICS))),
            st.tuples(st.just("carry"), st.sampled_from(METRICS), quantities),
            st.tuples(st.just("write")),
            st.tuples(st.just("reload")),
        ),
    ),
    min_size=20,  # hypothesis lists average ~5 steps otherwise: too few to change a printed metric
    max_size=60,
)


class TotalsModel:
    """The cells as plain dicts, printed as the contract's JSON shape from scratch."""

    def __init__(self) -> None:
        # metric -> {(start_ms, end_ms): value, or (ts_ms, value) for a gauge}, in the order
        # the metrics came (a metric dropped and back comes last).
        self.cells: dict[str, dict[tuple[int, int], Any]] = {}
        self.gauges: set[str] = set()
        self.carry: dict[str, tuple[int, Decimal]] = {}

    def snapshot(self) -> tuple[Any, ...]:
        cells = {m: dict(c) for m, c in self.cells.items()}
        return cells, set(self.gauges), dict(self.carry)

    def restore(self, held: tuple[Any, ...]) -> None:
        self.cells, self.gauges, self.carry = held

    def forget(self, metric: str) -> None:
        self.cells.pop(metric, None)
        self.gauges.discard(metric)
        self.carry.pop(metric, None)

    def starts_over(self, metric: str, kind: str) -> bool:
        """Whether a fold of ``kind`` drops the metric's cells (its aggregation changed)."""
        if kind == "latest":
            return metric in self.cells and metric not in self.gauges
        return metric in self.gauges or metric in self.carry

    def fold(self, kind: str, metric: str, span: tuple[int, int], q: Decimal, ts: int) -> None:
        if self.starts_over(metric, kind):
            self.forget(metric)
        cells = self.cells.setdefault(metric, {})
        if kind == "latest":
            self.gauges.add(metric)
            if span not in cells or ts >= cells[span][0]:
                cells[span] = (ts, q)
        elif kind == "max":
            cells[span] = q if span not in cells or q > cells[span] else cells[span]
        else:
            cells[span] = cells.get(span, Decimal(0)) + q

    def prune(self, keep_end_after_ms: int) -> None:
        for metric in list(self.cells):
            cells = self.cells[metric]
            old = [span for span in cells if span[1] <= keep_end_after_ms]
            if metric in self.gauges and old:
                latest = max(cells[span] for span in old)
                if metric not in self.carry or latest[0] >= self.carry[metric][0]:
                    self.carry[metric] = latest
            for span in old:
                del cells[span]
            if not cells:
                del self.cells[metric]
                self.gauges.discard(metric)

    def encoded(self) -> bytes:
        out: dict[str, Any] = {}
        for metric, cells in self.cells.items():
            if metric in self.gauges:
                out[metric] = {f"{s}:{e}": [ts, str(v)] for (s, e), (ts, v) in cells.items()}
            else:
                out[metric] = {f"{s}:{e}": str(v) for (s, e), v in cells.items()}
        if self.carry:
            out[CARRY_KEY] = {m: [ts, str(v)] for m, (ts, v) in self.carry.items()}
        return orjson.dumps(out)


@settings(max_examples=400)
@given(totals_ops)
def test_written_totals_are_the_models_printed_afresh(steps: list[tuple[Any, ...]]) -> None:
    totals, model = AccountTotals(), TotalsModel()
    written: list[tuple[bytes, bytes]] = []
    for op, *args in steps:
        if op in ("add", "sum", "max", "latest"):
            metric, index, quantity, ts_ms, undo = args
            period = PERIODS[index]
            kind = "sum" if op == "add" else op
            if op == "add" and model.starts_over(metric, "sum"):
                totals.keep_gauges(frozenset())  # as the intake does before it adds sums
                for gauge in [m for m in METRICS if m in model.gauges or m in model.carry]:
                    model.forget(gauge)
            undone = undo != "keep" and not model.starts_over(metric, kind)  # not restored
            held = model.snapshot()
            change: Change
            if op == "add":
                change = totals.add(metric, period, quantity)
            else:
                change = totals.fold(metric, kind, period, quantity, ts_ms)  # type: ignore[arg-type]
            model.fold(kind, metric, period.span, quantity, ts_ms)
            if undone:
                if undo == "write, undo":
                    assert totals.encoded() == model.encoded()
                totals.undo(change)
                model.restore(held)
        elif op == "prune":
            keep_end_after_ms = BASE_MS + args[0] * DAY_MS
            totals.prune(keep_end_after_ms)
            model.prune(keep_end_after_ms)
        elif op == "keep_gauges":
            totals.keep_gauges(args[0])
            for metric in [m for m in METRICS if m in model.gauges or m in model.carry]:
                if metric not in args[0]:
                    model.forget(metric)
        elif op == "carry":  # set from outside, as a regrouping does
            metric, value = args
            totals.carry[metric] = (BASE_MS, value)
            model.carry[metric] = (BASE_MS, value)
        elif op == "write":
            written.append((totals.encoded(), model.encoded()))
            assert written[-1][0] == written[-1][1]
            assert written[-1][0] == jsonbytes.dumps(totals.to_json())
        else:
            totals = AccountTotals.from_json(orjson.loads(totals.encoded()))
    assert totals.encoded() == model.encoded() == jsonbytes.dumps(totals.to_json())


MILESTONES = {m: Milestones(m, (Decimal(10), Decimal(100), Decimal("1E+3")), "r") for m in METRICS}

lifetime_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(METRICS), quantities),
        st.tuples(st.just("announce"), st.sampled_from(METRICS), st.decimals(0, 2000, places=0)),
        st.tuples(st.just("write")),
        st.tuples(st.just("reload")),
    ),
    min_size=10,
    max_size=50,
)


@settings(max_examples=300)
@given(lifetime_ops)
def test_written_lifetime_is_the_models_printed_afresh(steps: list[tuple[Any, ...]]) -> None:
    lifetime = AccountLifetime()
    totals: dict[str, Decimal] = {}
    announced: dict[str, list[Decimal]] = {}

    def printed() -> bytes:
        out: dict[str, Any] = {"totals": {m: str(t) for m, t in totals.items()}}
        if announced:
            out["announced"] = {m: [str(v) for v in sorted(at)] for m, at in announced.items()}
        return orjson.dumps(out)

    for op, *args in steps:
        if op == "add":
            metric, quantity = args
            after = lifetime.add(metric, quantity)
            if after is not None:  # else refused (inexact): nothing changes
                totals[metric] = totals.get(metric, Decimal(0)) + quantity
                assert totals[metric] == after
        elif op == "announce":
            metric, total = args
            new = [m for m in MILESTONES[metric].at if m <= total]
            lifetime.announce(metric, MILESTONES[metric], total)
            if new:
                announced[metric] = sorted({*announced.get(metric, []), *new})
        elif op == "write":
            assert lifetime.encoded() == printed() == jsonbytes.dumps(lifetime.to_json())
        else:
            lifetime = AccountLifetime.from_json(orjson.loads(lifetime.encoded()))
    assert lifetime.encoded() == printed()
