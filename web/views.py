"""HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``, ``/clock`` and
``/accounts/{id}``.

With ``MOMENTS_WEB_TOKEN`` set, ``/clock`` and ``/accounts/{id}`` need the bearer token
(``web.auth``); the others stay open for probes, scrapes and ``moments status``.

``/accounts/{id}`` is answered by the worker that owns the account's partition;
others forward the request there (Faust's topic routing, by the usage topic). It shows what the
worker holds of the account: plan and status, period totals with the threshold levels
announced, lifetime totals with the milestones announced, daily totals and open drop episodes
(with the id of the drop event that opened each), the last billing anniversary judged, the
last birthday celebrated, and when each rule of ``[[moments]]`` last fired (with the end of its
cooldown).
:func:`register` adds the views to a runtime's app.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.usage import key_partition
from app.clock import ManualClock
from app.faust_internals import fleet_urls, warm_router
from app.main import Runtime
from domain.common.timeutil import DAY_MS, to_rfc3339
from domain.intake.accounts import AccountPlan, period_of
from domain.plans.catalog import Catalog
from domain.plans.periods import day_to_date
from domain.rules.anniversaries import periods_completed, whole_years
from domain.rules.thresholds import level_text
from domain.wording.events import drop_event_id
from engine.engine import Engine
from state.store import PartitionStore
from tables.accounts import plan_of
from tables.anniversaries import anniversary_of
from tables.announced import announced_of
from tables.birthdays import celebrated_of
from tables.custom_firings import firings_of
from tables.daily import DAILY, daily_of
from tables.evaluations import evaluation_of
from tables.lifetime import LIFETIME, lifetime_of
from tables.totals import TOTALS, totals_of
from web.auth import guarded
from web.forwarding import owner_unreachable_is_503
from web.status import status_view

RECENT_DAYS_SHOWN = 14


def last_anniversary(
    store: PartitionStore, catalog: Catalog, account_id: str, plan: AccountPlan | None
) -> dict[str, Any] | None:
    """The last billing period judged for its anniversary (contract 3.5), or None.

    ``period`` is that closed period, ``periods_completed`` and ``years`` count from the
    account's billing anchor (or, without one, from the origin the pass keeps), as its event
    did; ``reached`` lists the metrics that reached their limit in it and ``underused`` says
    whether every limited metric stayed at or below the underuse level (what the next
    anniversary's suggestion is judged on). The period of an account that was not active then
    was judged without an event.
    """
    held = anniversary_of(store, account_id)
    if held is None:
        return None
    end_ms = held.summary.end_ms
    out: dict[str, Any] = {
        "period": None,
        "periods_completed": None,
        "years": None,
        "reached": sorted(held.summary.reached),
        "underused": held.summary.underused,
    }
    if plan is None:
        out["period"] = {"start": None, "end": to_rfc3339(end_ms)}
        return out
    period = period_of(plan, end_ms - 1, catalog)
    out["period"] = {"start": to_rfc3339(period.start_ms), "end": to_rfc3339(end_ms)}
    origin_ms = plan.anchor_ms if plan.anchor_ms is not None else held.origin_ms
    if origin_ms is not None and period.end_ms == end_ms:
        completed = periods_completed(origin_ms, end_ms, catalog.period)
        if completed >= 1:
            out["periods_completed"] = completed
            out["years"] = whole_years(origin_ms, period)
    return out


def account_view(
    store: PartitionStore, partition: int, catalog: Catalog, account_id: str
) -> dict[str, Any] | None:
    """What the worker holds for one account, or None when it knows nothing of it."""
    plan = plan_of(store, account_id)
    celebrated = celebrated_of(store, account_id)
    key = account_id.encode()
    known = plan is not None or any(store.get(t.name, key) for t in (TOTALS, DAILY, LIFETIME))
    if not known:
        return None
    totals = totals_of(store, account_id)
    levels = announced_of(store, account_id)
    catalog_plan = None if plan is None else catalog.plan(plan.plan_id)
    metrics_out: dict[str, list[dict[str, Any]]] = {}
    for metric, by_period in sorted(totals.periods.items()):
        limit = None if plan is None or catalog_plan is None else plan.limit(catalog_plan, metric)
        metrics_out[metric] = [
            {
                "period": {"start": to_rfc3339(start), "end": to_rfc3339(end)},
                "total": float(total),
                "limit": None if limit is None else float(limit),
                "announced": {
                    plan_id: [float(level_text(level)) for level in sorted(found)]
                    for plan_id, found in levels.levels.get(metric, {})
                    .get((start, end), {})
                    .items()
                },
            }
            for (start, end), total in sorted(by_period.items())
        ]
    days = daily_of(store, account_id)
    lifetime = lifetime_of(store, account_id)
    evaluation = evaluation_of(store, partition)
    drops = {
        "last_evaluated_day": None
        if evaluation is None
        else day_to_date(evaluation.day if evaluation.done else evaluation.day - 1).isoformat(),
        # "since": the first recent day of the drop (the event's dropped_on); the drop event's
        # id only when it was sent (a drop of an inactive account opens an episode silently).
        "open_episodes": {
            metric: {
                "since": day_to_date(episode.opened_day).isoformat(),
                "announced": episode.announced,
                "drop_event_id": drop_event_id(account_id, metric, day_to_date(episode.opened_day))
                if episode.announced
                else None,
            }
            for metric, episode in sorted(days.episodes.items())
            if episode.opened_day is not None
        },
        "recent_daily_totals": {
            metric: {
                day_to_date(day).isoformat(): float(total)
                for day, total in sorted(history.days.items())[-RECENT_DAYS_SHOWN:]
            }
            for metric, history in sorted(days.metrics.items())
        },
    }
    return {
        "account_id": account_id,
        "plan": None
        if plan is None
        else {
            "id": plan.plan_id,
            "name": catalog_plan.name if catalog_plan else None,
            "status": plan.status,
            "billing_anchor": None if plan.anchor_ms is None else to_rfc3339(plan.anchor_ms),
            "limits": {m: float(v) for m, v in plan.limits.items()},
            "updated_at": to_rfc3339(plan.updated_at_ms),
            # Personal data, shown like the rest of the plan record: this view is guarded
            # (web.auth); absent when billing sent none.
            **({} if plan.birth_date is None else {"birth_date": plan.birth_date}),
        },
        "status": None if plan is None else plan.status,
        "period_totals": metrics_out,
        # How each metric's values aggregate (contract 1.4), and the gauges' readings carried
        # from periods no longer held: a level with no reading this period still stands.
        "aggregations": {
            metric: catalog.aggregation(metric)
            for metric in sorted({*metrics_out, *totals.carry, *days.metrics})
        },
        "carried_readings": {
            metric: {"value": float(value), "read_at": to_rfc3339(read_ms)}
            for metric, (read_ms, value) in sorted(totals.carry.items())
        },
        "lifetime": {
            metric: {
                "total": float(lifetime.total(metric)),
                "milestones_reached": [float(m) for m in lifetime.announced.get(metric, ())],
            }
            for metric in sorted({*lifetime.totals, *lifetime.announced})
        },
        "drops": drops,
        "last_anniversary": last_anniversary(store, catalog, account_id, plan),
        "last_birthday": None if celebrated is None else celebrated.isoformat(),
        "moments_fired": moments_fired(store, catalog, account_id),
    }


def moments_fired(store: PartitionStore, catalog: Catalog, account_id: str) -> dict[str, Any]:
    """Rule id -> when it last fired for the account and until when its cooldown holds (null:
    none), for the rules of the catalog that fired (contract 3.8)."""
    fired = firings_of(store, account_id).fired
    shown: dict[str, Any] = {}
    for rule in catalog.moments:
        firing = fired.get(rule.id)
        if firing is None:
            continue
        cooldown = rule.cooldown_days
        shown[rule.id] = {
            "last_fired_at": to_rfc3339(firing.at_ms),
            "cooldown_until": None
            if cooldown is None
            else to_rfc3339(firing.at_ms + cooldown * DAY_MS),
        }
    return shown


def register(runtime: Runtime, engine: Engine) -> None:
    """Add every view to ``runtime.app``."""
    app = runtime.app
    settings = runtime.settings
    metrics = runtime.metrics
    clock = runtime.clock
    token = settings.web_token.get_secret_value() if settings.web_token else None
    usage_topic = app.topic(settings.topic_usage, key_type=bytes, value_type=bytes, acks=False)

    @app.task  # type: ignore[untyped-decorator]  # faust types its decorators loosely
    async def warm_routing() -> None:
        # /accounts routes by Faust's producer metadata, which would otherwise lack the topic.
        await warm_router(app, settings.topic_usage)

    @app.page("/healthz")
    class Healthz(View):
        """Alive: the event loop answers."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page("/readyz")
    class Readyz(View):
        """Ready: assigned, stores restored, plans caught up. 503 otherwise."""

        async def get(self, request: Request) -> Response:
            checks = engine.readiness()
            ready = engine.is_ready()
            return self.json({"ready": ready, "checks": checks}, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(View):
        """Prometheus text format."""

        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; Prometheus' text format is UTF-8.
            content_type = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
            return self.bytes(generate_latest(metrics.registry), content_type=content_type)

    @app.page("/status")
    class Status(View):
        """Partitions, lag, state size, readiness and the fleet's URLs (``moments status``)."""

        async def get(self, request: Request) -> Response:
            url = str(app.conf.canonical_url).rstrip("/")
            return self.json(status_view(engine, metrics, url, fleet_urls(app)))

    @app.page("/clock")
    class ClockView(View):
        """Read the worker's clock; with MOMENTS_CLOCK=manual, move it (tests)."""

        @guarded(token)
        async def get(self, request: Request) -> Response:
            return self.json({"now_ms": clock.now_ms(), "kind": settings.clock})

        @guarded(token)
        async def post(self, request: Request) -> Response:
            if not isinstance(clock, ManualClock):
                return self.json(
                    {"error": "the clock moves only with MOMENTS_CLOCK=manual"}, status=403
                )
            body = await request.json()
            now_ms = body.get("now_ms") if isinstance(body, dict) else None
            if type(now_ms) is not int:
                return self.json({"error": 'expected {"now_ms": <epoch milliseconds>}'}, status=400)
            clock.set_ms(now_ms)
            return self.json({"now_ms": clock.now_ms(), "kind": settings.clock})

    @app.page("/accounts/{account_id}")
    class Account(View):
        """Plan, status, totals and drop state of one account, from the worker owning it."""

        # The token is checked before routing, and the owner checks it again: Faust's
        # router forwards the request's headers, Authorization included.
        @guarded(token)
        @owner_unreachable_is_503
        @app.topic_route(usage_topic, match_info="account_id")  # type: ignore[arg-type]  # faust types routed handlers without URL parameters
        async def get(self, request: Request, account_id: str) -> Response:
            partition = key_partition(account_id.encode(), settings.partitions)
            owned = engine.owned.get(partition)
            if owned is None or not owned.ready:
                return self.json(
                    {"error": f"partition {partition} is not ready on this worker"}, status=503
                )
            view = account_view(owned.store, partition, runtime.catalog, account_id)
            if view is None:
                return self.json({"error": f"account {account_id!r} is unknown"}, status=404)
            return self.json(view)
