"""``moments check-config``: validate settings, the plan catalog and the Kafka codecs."""

from __future__ import annotations

import argparse
import base64
import os
from collections.abc import Iterator, Mapping

from app.codecs import CODECS, check_codecs
from config.settings import Settings, load_settings, unknown_variables
from domain.delivery.endpoints import load_endpoints, shown_url
from domain.delivery.signing import SECRET_PREFIX
from domain.plans.catalog import Catalog, MomentRule, load_catalog
from domain.wording.kinds import KINDS
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
    print_endpoints(settings, catalog)
    print(f"compression codecs decoded: none, {', '.join(CODECS)}")
    for name in unknown_variables(os.environ):
        print(f"warning: {name} is not a setting of usage-moments (typo?)")
    print("ok")
    return 0


class _SecretsOrStandIns(Mapping[str, str]):
    """The environment, with a stand-in secret for each variable it lacks (remembered): the
    deliverer's secrets are usually set in its own environment only, not where this runs."""

    _STAND_IN = SECRET_PREFIX + base64.b64encode(bytes(32)).decode()

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.missing: list[str] = []

    def __getitem__(self, name: str) -> str:
        value = self.env.get(name)
        if value:
            return value
        self.missing.append(name)
        return self._STAND_IN

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def print_endpoints(settings: Settings, catalog: Catalog) -> None:
    """Check the webhook endpoints file of ``moments deliver`` as it reads it (raising its
    one-line error) and list the endpoints; secrets are never printed."""
    env = _SecretsOrStandIns(os.environ)
    endpoints = load_endpoints(settings.endpoints_file, env, KINDS)
    print(f"webhook endpoints ({settings.endpoints_file}):")
    kinds = [*KINDS, *(rule.kind for rule in catalog.moments)]
    for endpoint in endpoints:
        plans = "every plan" if endpoint.plans is None else ", ".join(sorted(endpoint.plans))
        accounts = "" if endpoint.accounts is None else f", {len(endpoint.accounts)} accounts"
        print(
            f"  {endpoint.name} -> {shown_url(endpoint.url)}: kinds {', '.join(endpoint.kinds)}; "
            f"{plans}{accounts}; timeout {endpoint.timeout_s:g}s"
        )
        for pattern in endpoint.kinds_matching_nothing(kinds):
            print(
                f"  warning: endpoint {endpoint.name}: kinds {pattern!r} is no kind of the catalog"
            )
    for name in dict.fromkeys(env.missing):
        print(f"  note: {name} is not set here (moments deliver's environment must set it)")


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
