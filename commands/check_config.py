"""``moments check-config``: validate settings, the plan catalog and the Kafka codecs."""

from __future__ import annotations

import argparse
import os

from app.codecs import CODECS, check_codecs
from config.settings import load_settings, unknown_variables
from domain.plans.catalog import MomentRule, load_catalog
from domain.wording.templates import load_templates


def run_check_config(_: argparse.Namespace) -> int:
    """Validate settings, the plan catalog, the message templates and the Kafka codecs, and
    print a summary."""
    settings = load_settings(os.environ)
    catalog = load_catalog(settings.plans_file)
    # The message templates as the worker reads them: a variant per aggregation in use.
    load_templates(settings.messages_file, {"sum", *catalog.aggregations.values()})
    check_codecs()
    print("settings:")
    for name, value in settings.summary().items():
        print(f"  {name} = {value}")
    print(
        f"plan catalog ({settings.plans_file}): period={catalog.period} currency={catalog.currency}"
    )
    for plan in catalog.plans:
        limits = ", ".join(f"{m}={v}" for m, v in sorted(plan.limits.items())) or "unlimited"
        print(f"  {plan.rank}. {plan.id} ({plan.name}) {plan.price} {catalog.currency}: {limits}")
    metrics = sorted({*catalog.units, *catalog.aggregations})
    print("  metrics: " + ", ".join(f"{m} ({catalog.aggregation(m)})" for m in metrics))
    for meter in catalog.meters:
        value = "1 each" if meter.value is None else "data." + ".".join(meter.value)
        where = "".join(
            f", data.{'.'.join(path)} = {wanted!r}" for path, wanted in meter.where.items()
        )
        print(f"  meter: CloudEvents {meter.event_type!r} -> {meter.metric} ({value}{where})")
    for rule in catalog.moments:
        print("  " + moment_line(rule, settings.event_topic(rule.kind)))
    print(f"compression codecs decoded: none, {', '.join(CODECS)}")
    for name in unknown_variables(os.environ):
        print(f"warning: {name} is not a setting of usage-moments (typo?)")
    print("ok")
    return 0


def moment_line(rule: MomentRule, topic: str) -> str:
    """One rule of ``[[moments]]`` as check-config lists it: ``moment support-heavy ->
    moments.custom.support-heavy: support_calls at least 3 over 7d, plans starter, growth,
    cooldown 30d, action offer``."""
    direction = "at least" if rule.at_least else "at most"
    amount = f"{rule.amount} of the limit" if rule.of_limit else f"{rule.amount}"
    plans = "every plan" if rule.plans is None else "plans " + ", ".join(sorted(rule.plans))
    cooldown = (
        "once per period" if rule.cooldown_days is None else f"cooldown {rule.cooldown_days}d"
    )
    return (
        f"moment {rule.id} -> {topic}: {rule.metric} {direction} {amount} over {rule.window}, "
        f"{plans}, {cooldown}, action {rule.action}"
    )
