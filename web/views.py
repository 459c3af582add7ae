"""HTTP endpoints: ``/healthz``, ``/readyz``, ``/metrics`` and ``/accounts/{id}``.

``/accounts/{id}`` is answered by the worker that owns the account's partition;
others forward the request there (Faust's table routing).
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.clock import ManualClock
from app.health import readiness
from app.main import app, catalog, clock, metrics, settings
from domain.periods import day_to_date
from domain.thresholds import level_text
from domain.timeutil import to_rfc3339
from tables.accounts import accounts, plan_of
from tables.announced import announced_of
from tables.daily import daily, daily_of
from tables.evaluations import evaluations
from tables.totals import period_totals, totals_of

RECENT_DAYS_SHOWN = 14


def partition_of(account_id: str) -> int:
    """Partition of the account's state (its key's partition in the changelog)."""
    return int(
        app.producer.key_partition(
            daily.changelog_topic.get_topic_name(), account_id.encode()
        ).partition
    )


def account_view(account_id: str) -> dict[str, Any] | None:
    """What the worker holds for one account, or None when it knows nothing of it."""
    plan = plan_of(account_id)
    known = plan is not None or account_id in period_totals or account_id in daily
    if not known:
        return None
    totals = totals_of(account_id)
    levels = announced_of(account_id)
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
    days = daily_of(account_id)
    evaluated = evaluations.get(f"p{partition_of(account_id)}")
    drops = {
        "last_evaluated_day": None
        if evaluated is None
        else day_to_date(int(evaluated)).isoformat(),
        "open_episodes": {
            metric: {"since": day_to_date(episode.opened_day).isoformat()}
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
        },
        "status": None if plan is None else plan.status,
        "period_totals": metrics_out,
        "drops": drops,
    }


@app.page("/healthz")
class Healthz(View):
    """Alive: the event loop answers."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "alive"})


@app.page("/readyz")
class Readyz(View):
    """Ready: assigned, tables recovered, plans caught up. 503 otherwise."""

    async def get(self, request: Request) -> Response:
        state = readiness(app)
        return self.json(state, status=200 if state["ready"] else 503)


@app.page("/metrics")
class Metrics(View):
    """Prometheus text format."""

    async def get(self, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type; Prometheus' text format is UTF-8.
        content_type = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
        return self.bytes(generate_latest(metrics.registry), content_type=content_type)


@app.page("/clock")
class ClockView(View):
    """Read the worker's clock; with MOMENTS_CLOCK=manual, move it (tests)."""

    async def get(self, request: Request) -> Response:
        return self.json({"now_ms": clock.now_ms(), "kind": settings.clock})

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
    """Plan, status and period totals of one account, from the worker that owns it."""

    # faust types table_route for handlers without URL parameters
    @app.table_route(table=accounts, match_info="account_id")  # type: ignore[arg-type]
    async def get(self, request: Request, account_id: str) -> Response:
        view = account_view(account_id)
        if view is None:
            return self.json({"error": f"account {account_id!r} is unknown"}, status=404)
        return self.json(view)
