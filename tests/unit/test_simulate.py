"""The simulator's pure part: deterministic for a seed, valid records valid, bad records bad."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.simulate.traffic import (
    BAD_KINDS,
    INTERACTIONS,
    SimRecord,
    Simulator,
    daily_rhythm,
)
from domain.errors import InvalidUsageRecord
from domain.intake.cloudevents import is_cloudevent, parse_cloudevent
from domain.intake.records import Metering, UsageRecord, parse_plan, parse_usage
from domain.plans.catalog import Catalog, load_catalog, parse_catalog

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "plans.toml"
NOW_MS = 1_767_268_800_000  # 2026-01-01T12:00:00Z
SKEW_MS = 300_000  # MOMENTS_MAX_CLOCK_SKEW's default
MINUTE_MS = 60_000
SHIPPED_CATALOG = load_catalog(SHIPPED)
#: The shipped catalog's metering: the simulator's records parse as the worker parses them.
METERING = Metering.of(SHIPPED_CATALOG)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(SHIPPED)


@pytest.fixture
def make_sim(catalog: Catalog) -> Callable[..., Simulator]:
    """A factory of simulators on the shipped catalog; keyword arguments override defaults."""

    def make(**overrides: object) -> Simulator:
        options: dict[str, object] = {"accounts": 20, "rate": 50.0, "bad_every": 200, "seed": 1}
        options.update(overrides)
        return Simulator(catalog, run_id="test", **options)  # type: ignore[arg-type]

    return make


def run(sim: Simulator, seconds: int, per_second: int, start_ms: int = NOW_MS) -> list[SimRecord]:
    """Records of ``seconds`` one-second ticks of ``per_second`` records each."""
    out: list[SimRecord] = []
    for second in range(seconds):
        out += sim.next_records(per_second, start_ms + second * 1000)
    return out


def parse(record: SimRecord, now_ms: int = NOW_MS) -> UsageRecord:
    return parse_usage(record.value, now_ms, SKEW_MS, METERING)


def readings(record: SimRecord, now_ms: int = NOW_MS) -> tuple[UsageRecord, ...]:
    """What the worker reads from ``record``: one usage record, or a CloudEvent's readings."""
    if record.kind == "cloudevent" or (record.kind == "duplicate" and record.headers):
        event = parse_cloudevent(record.value, record.headers, SHIPPED_CATALOG, now_ms, SKEW_MS)
        return event.readings
    return (parse(record, now_ms),)


# ---------------------------------------------------------------------------- determinism


def test_same_seed_same_plans_and_records(make_sim: Callable[..., Simulator]) -> None:
    first, second = make_sim(seed=7), make_sim(seed=7)
    assert first.plans(NOW_MS) == second.plans(NOW_MS)
    assert run(first, 30, 20) == run(second, 30, 20)


def test_other_seed_other_traffic(make_sim: Callable[..., Simulator]) -> None:
    assert run(make_sim(seed=1), 5, 20) != run(make_sim(seed=2), 5, 20)


def test_record_ids_carry_the_run_id_and_are_unique_apart_from_duplicates(
    make_sim: Callable[..., Simulator],
) -> None:
    records = [r for r in run(make_sim(), 60, 50) if r.kind == "usage"]
    ids = [parse(r).record_id for r in records]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("test-") for i in ids)


# ---------------------------------------------------------------------------- plans


def test_one_valid_plan_per_account_keyed_by_account(
    make_sim: Callable[..., Simulator], catalog: Catalog
) -> None:
    sim = make_sim(accounts=60)
    plans = sim.plans(NOW_MS)
    assert len(plans) == 60
    for key, value in plans:
        plan = parse_plan(value, catalog)
        assert plan.account_id == key.decode()
        assert plan.active
        assert plan.updated_at_ms == NOW_MS
    ids = [key.decode() for key, _ in plans]
    assert ids == [f"acct-{i:04d}" for i in range(1, 61)]


def test_plans_are_mostly_lower_rungs_and_some_have_an_anchor(
    make_sim: Callable[..., Simulator], catalog: Catalog
) -> None:
    parsed = [parse_plan(v, catalog) for _, v in make_sim(accounts=200).plans(NOW_MS)]
    ranks = Counter(p.plan_id for p in parsed)
    lower = {catalog.plans[0].id, catalog.plans[1].id}
    assert sum(n for plan_id, n in ranks.items() if plan_id in lower) > 100
    assert len(ranks) >= 4  # the upper rungs appear too
    anchored = [p for p in parsed if p.billing_anchor is not None]
    assert 20 < len(anchored) < 120
    assert all(p.billing_anchor.timestamp() * 1000 < NOW_MS for p in anchored)  # type: ignore[union-attr]


def test_hot_accounts_are_on_the_lowest_plan(
    make_sim: Callable[..., Simulator], catalog: Catalog
) -> None:
    sim = make_sim()
    assert sim.hot_metric == "api_calls"
    assert sim.hot_metrics == ["api_calls", "storage_gb", "seats", "active_users"]
    assert len(sim.hot_accounts) == 2
    assert all(a.plan.id == catalog.plans[0].id for a in sim.hot_accounts)


# ---------------------------------------------------------------------------- usage


def test_valid_records_parse_and_are_keyed_by_account(
    make_sim: Callable[..., Simulator], catalog: Catalog
) -> None:
    records = run(make_sim(), 120, 50)
    good = [r for r in records if r.kind != "bad"]
    assert good
    metrics: Counter[str] = Counter()
    for record in good:
        for usage in readings(record, NOW_MS + 120_000):
            assert usage.account_id == record.key.decode()
            assert usage.quantity >= 0
            metrics[usage.metric] += 1
    # Every catalog metric is used, but support calls and exports: the showcase sends those.
    assert set(metrics) == set(catalog.units) - INTERACTIONS
    assert INTERACTIONS <= set(catalog.units)
    assert metrics.most_common(1)[0][0] == "api_calls"


@pytest.mark.parametrize("bad_every", [7, 50, 200])
def test_one_bad_record_in_bad_every_rotating_through_the_kinds(
    make_sim: Callable[..., Simulator], bad_every: int
) -> None:
    records = run(make_sim(bad_every=bad_every), 40, 50)
    bad = [r for r in records if r.kind == "bad"]
    assert len(bad) == len(records) // bad_every
    assert [r.bad_kind for r in bad] == [BAD_KINDS[i % len(BAD_KINDS)] for i in range(len(bad))]
    for record in bad:
        with pytest.raises(InvalidUsageRecord):
            parse(record, NOW_MS + 40_000)


def test_each_bad_kind_fails_for_its_own_reason(make_sim: Callable[..., Simulator]) -> None:
    bad = [r for r in run(make_sim(bad_every=3), 10, 30) if r.kind == "bad"]
    reasons: dict[str, set[str]] = {}
    for record in bad:
        with pytest.raises(InvalidUsageRecord) as caught:
            parse(record, NOW_MS + 10_000)
        assert record.bad_kind is not None
        reasons.setdefault(record.bad_kind, set()).add(str(caught.value).split(":")[0])
    assert reasons["not-json"] == {"invalid JSON"}
    assert reasons["negative-quantity"] == {"quantity"}
    assert reasons["future-timestamp"] == {"timestamp"}
    assert reasons["bad-metric"] == {"metric"}
    assert reasons["missing-field"] <= {
        "record_id",
        "account_id",
        "metric",
        "quantity",
        "timestamp",
    }


def test_no_bad_records_when_bad_every_is_zero(make_sim: Callable[..., Simulator]) -> None:
    assert not [r for r in run(make_sim(bad_every=0), 20, 50) if r.kind == "bad"]


def test_duplicates_repeat_an_earlier_record(make_sim: Callable[..., Simulator]) -> None:
    records = run(make_sim(), 60, 50)
    duplicates = [r for r in records if r.kind == "duplicate"]
    assert 10 <= len(duplicates) <= 60  # about one in a hundred
    sent = {(r.value, r.headers) for r in records if r.kind in ("usage", "cloudevent")}
    assert all((d.value, d.headers) in sent for d in duplicates)


def test_stats_count_every_kind(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim()
    records = run(sim, 20, 50)
    kinds = Counter(r.kind for r in records)
    assert (sim.stats.usage, sim.stats.cloudevents, sim.stats.duplicates, sim.stats.bad) == (
        kinds["usage"],
        kinds["cloudevent"],
        kinds["duplicate"],
        kinds["bad"],
    )
    assert sim.stats.total == 1000


@pytest.mark.parametrize("rate", [10, 50, 200])
def test_hot_accounts_cross_their_limit_within_minutes_at_any_rate(
    make_sim: Callable[..., Simulator], rate: int
) -> None:
    sim = make_sim(rate=float(rate))
    hot = {a.account_id: Decimal(str(a.limit("api_calls"))) for a in sim.hot_accounts}
    totals: Counter[str] = Counter()
    seconds = 2 * 60
    for record in run(sim, seconds, rate):
        if record.kind != "usage":
            continue
        usage = parse(record, NOW_MS + seconds * 1000)
        if usage.account_id in hot and usage.metric == "api_calls":
            totals[usage.account_id] += usage.quantity  # type: ignore[assignment]
    for account_id, limit in hot.items():
        # ~30 % a minute: past half the limit after 2 minutes, not yet all of it.
        assert limit * Decimal("0.5") <= totals[account_id] < limit * Decimal("1.0")


def test_bursts_happen(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim()
    bursting: set[str] = set()
    for second in range(20 * 60):
        sim.next_records(5, NOW_MS + second * 1000)
        bursting |= {a.account_id for a in sim.accounts if a.burst is not None}
    assert len(bursting) >= 3
    assert not bursting & {a.account_id for a in sim.hot_accounts}


def test_timestamps_are_recent_in_both_accepted_forms(make_sim: Callable[..., Simulator]) -> None:
    records = [r for r in run(make_sim(), 60, 50) if r.kind == "usage"]
    stamps = [orjson.loads(r.value)["timestamp"] for r in records]
    assert {type(s) for s in stamps} == {int, str}
    for record in records:
        usage = parse(record, NOW_MS + 60_000)
        assert NOW_MS - 11 * MINUTE_MS <= usage.timestamp_ms <= NOW_MS + 60_000


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    accounts=st.integers(1, 40),
    bad_every=st.integers(0, 20),
    rate=st.floats(0.5, 5000),
)
def test_every_record_is_what_it_claims(
    catalog: Catalog, seed: int, accounts: int, bad_every: int, rate: float
) -> None:
    sim = Simulator(catalog, accounts=accounts, rate=rate, bad_every=bad_every, seed=seed)
    for key, value in sim.plans(NOW_MS):
        assert parse_plan(value, catalog).account_id == key.decode()
    for record in run(sim, 5, 40):
        if record.kind == "bad":
            with pytest.raises(InvalidUsageRecord):
                parse(record, NOW_MS + 5000)
        else:
            for usage in readings(record, NOW_MS + 5000):
                assert usage.account_id == record.key.decode()
                counted = catalog.aggregation(usage.metric) == "unique_count"
                assert (usage.unique is not None) == counted


@pytest.mark.parametrize(
    ("option", "value"), [("accounts", 0), ("rate", 0.0), ("rate", float("inf")), ("bad_every", -1)]
)
def test_nonsense_options_are_refused(
    make_sim: Callable[..., Simulator], option: str, value: object
) -> None:
    with pytest.raises(ValueError, match=option):
        make_sim(**{option: value})


def test_daily_rhythm_peaks_in_the_afternoon_and_rests_at_weekends() -> None:
    day = 1_767_571_200_000  # Monday 2026-01-05T00:00:00Z
    hours = [daily_rhythm(day + h * 3_600_000, 0.0) for h in range(24)]
    assert hours.index(max(hours)) == 15
    assert hours.index(min(hours)) == 3
    assert all(0.4 < h < 1.6 for h in hours)
    saturday = day + 5 * 86_400_000
    assert daily_rhythm(saturday + 15 * 3_600_000, 0.0) < max(hours)
    # In another time zone the same rhythm is shifted: 15:00 local is 06:00 UTC at +9.
    assert daily_rhythm(day + 6 * 3_600_000, 9.0) == pytest.approx(max(hours))


def test_a_catalog_of_interactions_only_still_gets_traffic() -> None:
    only = parse_catalog(
        '[metrics]\nsupport_calls = { unit = "calls", aggregation = "count" }\n'
        '[[plans]]\nid = "p"\nname = "P"\nrank = 0\nprice = 0\npausable = false\nlimits = {}\n'
    )
    records = run(Simulator(only, accounts=3, rate=20.0, bad_every=0), 10, 20)
    assert {orjson.loads(r.value)["metric"] for r in records} == {"support_calls"}


# ---------------------------------------------------------------------------- CloudEvents

#: The shipped catalog with a token meter that reads a nested field and filters on ``where``.
NESTED = SHIPPED.read_text().replace(
    'value = "tokens" ',
    'value = "usage.tokens"\nwhere = { model = "gpt-4o", cached = false } ',
)


def test_the_shipped_catalog_meters_usage_and_interactions(catalog: Catalog) -> None:
    assert [(m.event_type, m.metric, m.value) for m in catalog.meters] == [
        ("api-request", "api_calls", None),
        ("llm-completion", "tokens", ("tokens",)),
        ("support-call", "support_calls", None),  # what issue 19's example rules watch
        ("data-export", "exports", None),
    ]
    assert catalog.aggregation("tokens") == "sum"
    assert "usage.tokens" in NESTED


@pytest.mark.parametrize("text", [SHIPPED.read_text(), NESTED], ids=["shipped", "nested"])
def test_metered_usage_goes_as_cloudevents_in_both_modes(text: str) -> None:
    """With [[meters]] in the catalog: every tokens record and some one-call records are
    CloudEvents, each read by the worker as the usage it stands for."""
    catalog = parse_catalog(text, "plans.toml")
    sim = Simulator(catalog, accounts=20, rate=50.0, bad_every=200, seed=1, run_id="test")
    records = run(sim, 120, 50)
    events = [r for r in records if r.kind == "cloudevent"]
    binary = [r for r in events if any(name == "ce_specversion" for name, _ in r.headers)]
    assert 0 < len(binary) < len(events)  # both modes
    assert sim.stats.cloudevents == len(events)
    metrics: Counter[str] = Counter()
    hot = {a.account_id for a in sim.hot_accounts}
    for record in events:
        assert is_cloudevent(record.headers)
        event = parse_cloudevent(record.value, record.headers, catalog, NOW_MS + 120_000, SKEW_MS)
        [reading] = event.readings
        assert event.account_id == record.key.decode()
        if reading.metric == "api_calls":  # a hot account's calls stay plain records
            assert (reading.quantity, event.account_id in hot) == (1, False)
        metrics[reading.metric] += 1
    assert set(metrics) == {"api_calls", "tokens"}
    # Tokens only come as CloudEvents; API calls also as plain records.
    plain = [parse(r).metric for r in records if r.kind == "usage"]
    assert "tokens" not in plain and "api_calls" in plain


# ---------------------------------------------------------------------------- aggregations


def plain_usage(records: list[SimRecord], metric: str) -> dict[str, list[UsageRecord]]:
    """Per account, in the order sent, the records of ``metric`` (first sendings, parsed)."""
    out: dict[str, list[UsageRecord]] = {}
    for record in records:
        if record.kind in ("usage", "cloudevent"):
            for usage in readings(record, NOW_MS + 24 * 60 * MINUTE_MS):
                if usage.metric == metric:
                    out.setdefault(usage.account_id, []).append(usage)
    return out


def timed(sim: Simulator, seconds: int, per_second: int, metric: str) -> list[tuple[int, str, str]]:
    """(second sent, account, distinct value or quantity) of every record of ``metric``."""
    out = []
    for second in range(seconds):
        for record in sim.next_records(per_second, NOW_MS + second * 1000):
            if record.kind == "usage":
                usage = parse(record, NOW_MS + seconds * 1000)
                if usage.metric == metric:
                    value = usage.unique if usage.unique is not None else str(usage.quantity)
                    out.append((second, usage.account_id, value))
    return out


def test_the_shipped_catalog_has_a_level_a_peak_and_a_distinct_count(catalog: Catalog) -> None:
    assert catalog.aggregation("seats") == "latest"
    assert catalog.aggregation("storage_gb") == "max"
    assert catalog.aggregation("active_users") == "unique_count"
    assert catalog.unique_fields["active_users"] == ("user_id",)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_active_users_come_from_a_pool_per_account(
    make_sim: Callable[..., Simulator], seed: int
) -> None:
    sim = make_sim(seed=seed)
    records = run(sim, 600, 50)
    users = plain_usage(records, "active_users")
    assert users
    for account in sim.accounts:
        seen = {u.unique for u in users.get(account.account_id, [])}
        # Users are named in attributes, and an account never has more than its pool.
        assert all(u is not None and u.startswith('"user-') for u in seen)
        assert len(seen) <= account.users["active_users"]
    for record in records:
        value = orjson.loads(record.value) if record.kind == "usage" else {}
        if value.get("metric") == "active_users":
            assert value["attributes"]["user_id"].startswith("user-")
    # The count grows toward the pool: busy accounts have met most of their users in 10 min.
    sizes = sorted(len({u.unique for u in users[a]}) for a in users)
    assert sizes[-1] >= 3


@pytest.mark.parametrize("rate", [10, 50, 200])
def test_hot_accounts_pass_their_distinct_users_limit_within_minutes(
    make_sim: Callable[..., Simulator], catalog: Catalog, rate: int
) -> None:
    sim = make_sim(rate=float(rate))
    limit = catalog.plans[0].limit("active_users")
    assert limit is not None
    first: dict[str, dict[str, int]] = {}
    for second, account_id, user in timed(sim, 5 * 60, rate, "active_users"):
        first.setdefault(account_id, {}).setdefault(user, second)
    for account in sim.hot_accounts:
        met = sorted(first[account.account_id].values())
        assert len(met) > limit, account.account_id
        # The user past the allowance: within 4 minutes at the default rate (50/s); at 10/s
        # a hot account sends an active_users record about every 100 s, so within 5.
        assert met[int(limit)] < (4 if rate >= 50 else 5) * 60


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seats_are_readings_of_a_level_that_moves_one_seat_at_a_time(
    make_sim: Callable[..., Simulator], catalog: Catalog, seed: int
) -> None:
    sim = make_sim(seed=seed)
    seats = plain_usage(run(sim, 30 * 60, 10), "seats")
    assert seats
    for account in sim.accounts:
        levels = [u.quantity for u in seats.get(account.account_id, [])]
        assert all(q >= 1 and q == int(q) for q in levels)
        assert all(abs(b - a) <= 1 for a, b in zip(levels, levels[1:], strict=False)), levels
        if account.hot or not levels:
            continue
        # Around the account's usual level: not a sum of readings that only grows.
        base = Decimal(str(account.levels["seats"].base))
        assert max(abs(q - base) for q in levels) <= 6, (levels, base)


def test_hot_accounts_add_seats_past_their_limit_within_minutes(
    make_sim: Callable[..., Simulator], catalog: Catalog
) -> None:
    sim = make_sim()
    limit = catalog.plans[0].limit("seats")
    assert limit is not None
    readings_of: dict[str, list[tuple[int, Decimal]]] = {a.account_id: [] for a in sim.hot_accounts}
    for second, account_id, quantity in timed(sim, 5 * 60, 50, "seats"):
        if account_id in readings_of:
            readings_of[account_id].append((second, Decimal(quantity)))
    for account_id, got in readings_of.items():
        past = [second for second, q in got if q > limit]
        assert past and past[0] < 3 * 60, (account_id, got)
        assert max(q for _, q in got) <= 2 * limit  # it stops at twice the limit


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_storage_readings_follow_a_slowly_growing_level(
    make_sim: Callable[..., Simulator], catalog: Catalog, seed: int
) -> None:
    sim = make_sim(seed=seed)
    storage = plain_usage(run(sim, 30 * 60, 10), "storage_gb")
    assert storage
    for account in sim.accounts:
        got = [u.quantity for u in storage.get(account.account_id, [])]
        peak = Decimal(0)
        for quantity in got:
            # Never far under the peak so far (a little: files come and go).
            assert quantity >= peak * Decimal("0.96"), got
            peak = max(peak, quantity)
        limit = account.limit("storage_gb")
        if got and not account.hot and limit is not None:
            # A month's growth is a fraction of the limit: half an hour's is tiny.
            assert got[-1] - got[0] < Decimal(str(limit)) * Decimal("0.05"), got


def test_hot_accounts_storage_grows_past_its_limit_within_minutes(
    make_sim: Callable[..., Simulator], catalog: Catalog
) -> None:
    sim = make_sim()
    limit = catalog.plans[0].limit("storage_gb")
    assert limit is not None
    hot = {a.account_id for a in sim.hot_accounts}
    past: dict[str, int] = {}
    for second, account_id, quantity in timed(sim, 8 * 60, 50, "storage_gb"):
        if account_id in hot and Decimal(quantity) > limit:
            past.setdefault(account_id, second)
    assert set(past) == hot
    assert all(second < 6 * 60 for second in past.values())


def test_hot_traffic_and_bursts_do_not_depend_on_the_other_metrics() -> None:
    """One more metric in the catalog changes none of the hot accounts' hot records, nor the
    bursts: each has its own random stream."""
    extra = parse_catalog(
        SHIPPED.read_text().replace("[metrics]\n", '[metrics]\nlogins = "logins"\n', 1),
        "plans.toml",
    )
    assert "logins" in extra.units

    def hot_and_bursts(catalog: Catalog) -> tuple[list[tuple[int, str, str]], list[object]]:
        sim = Simulator(catalog, accounts=20, rate=20.0, bad_every=200, seed=1, run_id="t")
        hot = {a.account_id for a in sim.hot_accounts}
        calls: list[tuple[int, str, str]] = []
        bursts: list[object] = []
        for second in range(300):
            for record in sim.next_records(20, NOW_MS + second * 1000):
                value = orjson.loads(record.value) if record.kind == "usage" else {}
                if value.get("account_id") in hot and value.get("metric") == "api_calls":
                    calls.append((second, value["account_id"], str(value["quantity"])))
            bursts.append([(a.account_id, a.burst) for a in sim.accounts if a.burst])
        return calls, bursts

    assert hot_and_bursts(extra) == hot_and_bursts(SHIPPED_CATALOG)
