#!/usr/bin/env python3
"""Print one example event of each kind, built by the real builders, for docs/events.md.

The events come from :func:`domain.events.threshold_event` and :func:`domain.events.drop_event`
with the shipped plan catalog (``config/plans.toml``) and message templates
(``config/messages.toml``) and fixed inputs, so the output is the same on every run. Paste it
into the "Example payloads" section of docs/events.md; ``tests/unit/test_docs_events.py`` fails
when the doc and this output differ.

    .venv/bin/python scripts/gen-event-examples.py
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from domain.catalog import Catalog, Plan, load_catalog
from domain.events import drop_event, threshold_event
from domain.messages import Templates, load_templates
from domain.periods import Period
from domain.thresholds import detect
from domain.timeutil import parse_rfc3339_ms

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "acct-0042"
METRIC = "api_calls"
# The billing period of every example: November 2026 (monthly plans, default anchor).
PERIOD = Period.from_ms(
    parse_rfc3339_ms("2026-11-01T00:00:00Z"), parse_rfc3339_ms("2026-12-01T00:00:00Z")
)


def _plan(catalog: Catalog, plan_id: str) -> Plan:
    found = catalog.plan(plan_id)
    if found is None:
        raise SystemExit(f"plan {plan_id!r} is not in the shipped catalog")
    return found


def _threshold(
    catalog: Catalog,
    templates: Templates,
    *,
    total: int,
    announced: frozenset[Decimal],
    record_id: str,
    at: str,
    emitted: str,
) -> dict[str, Any]:
    starter = _plan(catalog, "starter")
    limit = starter.limit(METRIC)
    if limit is None:
        raise SystemExit(f"the starter plan has no {METRIC} limit")
    crossing = detect(Decimal(total), limit, starter.levels, announced)
    if crossing is None:
        raise SystemExit(f"{total} of {limit} crosses no level not in {sorted(announced)}")
    return threshold_event(
        templates=templates,
        catalog=catalog,
        plan=starter,
        account_id=ACCOUNT,
        metric=METRIC,
        period=PERIOD,
        total=Decimal(total),
        limit=limit,
        crossing=crossing,
        trigger_record_id=record_id,
        triggered_at_ms=parse_rfc3339_ms(at),
        emitted_at_ms=parse_rfc3339_ms(emitted),
    )


def examples() -> dict[str, dict[str, Any]]:
    """One event per kind, by kind, in topic order."""
    catalog = load_catalog(ROOT / "config" / "plans.toml")
    templates = load_templates(ROOT / "config" / "messages.toml")
    # Starter (10,000 API calls a month): 8,000 used on November 18 at 10:00 UTC.
    near = _threshold(
        catalog,
        templates,
        total=8_000,
        announced=frozenset(),
        record_id="rec-7f3a9c",
        at="2026-11-18T10:00:00Z",
        emitted="2026-11-18T10:00:00.412Z",
    )
    # The same account reaches its 10,000 on November 24; 0.8 was announced above.
    hit = _threshold(
        catalog,
        templates,
        total=10_000,
        announced=frozenset({Decimal("0.8")}),
        record_id="rec-81d2e0",
        at="2026-11-24T15:20:00Z",
        emitted="2026-11-24T15:20:00.387Z",
    )
    # Another account, on Growth, usually makes about 1,200 API calls a day and made none on
    # November 21, 22 and 23: evaluated when November 23 closed (emitted after the 15 min grace).
    growth = _plan(catalog, "growth")
    drop = drop_event(
        templates=templates,
        catalog=catalog,
        plan=growth,
        account_id="acct-0117",
        metric=METRIC,
        period=PERIOD,
        total=Decimal(24_000),
        limit=growth.limit(METRIC),
        recent_days=3,
        recent_total=Decimal(0),
        expected_total=Decimal(3_600),
        ratio=Decimal(0),
        last_active_at_ms=parse_rfc3339_ms("2026-11-20T17:42:10Z"),
        first_recent_day=date(2026, 11, 21),
        evaluated_at_ms=parse_rfc3339_ms("2026-11-24T00:00:00Z"),
        emitted_at_ms=parse_rfc3339_ms("2026-11-24T00:15:02.130Z"),
    )
    return {"threshold-near": near, "threshold-hit": hit, "sudden-drop": drop}


def render(event: dict[str, Any]) -> str:
    """An event as it appears in the doc: indented JSON (the wire form has no spaces)."""
    return json.dumps(event, indent=2, ensure_ascii=False)


def main() -> None:
    for kind, event in examples().items():
        print(f"### {kind}\n\n```json\n{render(event)}\n```\n")


if __name__ == "__main__":
    main()
