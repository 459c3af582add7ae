"""Where moments you define (contract 3.8) show: their kinds, topics, metric series,
``moments tail`` and ``moments check-config``."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry

from app.metrics import build_metrics
from app.topology import required_topics
from commands.check_config import moment_line
from commands.tail.render import format_event, parse_kinds
from config.settings import load_settings
from domain.plans.catalog import parse_catalog
from domain.wording.kinds import KINDS, event_kinds

CATALOG = parse_catalog(
    """
[metrics]
calls = "support calls"

[[plans]]
id = "starter"
name = "Starter"
rank = 1
price = 19
limits = {}

[[moments]]
id = "support-heavy"
metric = "calls"
window = "7d"
at_least = 3
plans = ["starter"]
cooldown = "30d"
title = "t"
body = "b"
action = "none"

[[moments]]
id = "quiet"
metric = "calls"
window = "period"
at_least = 0.5
of_limit = true
title = "t"
body = "b"
action = "none"
"""
)
KINDS_WITH_RULES = (*KINDS, "custom.support-heavy", "custom.quiet")


def test_event_kinds_add_one_per_rule() -> None:
    assert event_kinds(CATALOG) == KINDS_WITH_RULES


def test_one_topic_and_one_series_per_rule() -> None:
    settings = load_settings({"MOMENTS_PARTITIONS": "3"})
    names = {s.name for s in required_topics(settings, (), event_kinds(CATALOG))}
    assert {"moments.custom.support-heavy", "moments.custom.quiet"} <= names
    assert "moments.custom.support-heavy" not in {s.name for s in required_topics(settings)}
    metrics = build_metrics(CollectorRegistry(), kinds=event_kinds(CATALOG))
    value = metrics.registry.get_sample_value(
        "moments_events_total", {"kind": "custom.support-heavy"}
    )
    assert value == 0.0


def test_tail_follows_rules_by_kind_or_all_of_them() -> None:
    assert parse_kinds(["custom.quiet", "milestone"], KINDS_WITH_RULES) == (
        "milestone",
        "custom.quiet",
    )
    assert parse_kinds(["custom"], KINDS_WITH_RULES) == (
        "custom.support-heavy",
        "custom.quiet",
    )
    assert parse_kinds([], KINDS_WITH_RULES) == KINDS_WITH_RULES
    with pytest.raises(ValueError, match="unknown event kind 'custom.gone'"):
        parse_kinds(["custom.gone"], KINDS_WITH_RULES)


def test_tail_prints_a_custom_event_with_its_figures() -> None:
    event = {
        "kind": "custom.support-heavy",
        "account_id": "acct-42",
        "metric": "calls",
        "usage": {"total": 12, "limit": None, "ratio": None, "unit": "support calls"},
        "custom": {"rule": "support-heavy", "window": "7d", "value": 3, "threshold": 3},
        "message": {"title": "Need a hand?", "body": "..."},
        "suggestion": {"action": "none", "rationale": "r"},
        "triggered_at": "2026-11-18T10:00:00Z",
    }
    text = format_event("custom.support-heavy", b"acct-42", orjson.dumps(event), None)
    head, title = text.split("\n")
    assert "custom.support-heavy" in head
    assert "3 support calls over 7d (threshold 3); 12 support calls this period" in head
    assert title.strip() == "Need a hand?"


def test_check_config_lists_each_rule() -> None:
    heavy, quiet = CATALOG.moments
    assert moment_line(heavy, "moments.custom.support-heavy") == (
        "moment support-heavy -> moments.custom.support-heavy: calls at least 3 over 7d, "
        "plans starter, cooldown 30d, action none"
    )
    assert moment_line(quiet, "moments.custom.quiet") == (
        "moment quiet -> moments.custom.quiet: calls at least 0.5 of the limit over period, "
        "every plan, once per period, action none"
    )
