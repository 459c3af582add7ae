"""``--moments N``: the bench's catalog with N generated ``[[moments]]`` rules (issue 19 item 5:
"a catalog of 50 rules costs no more than 20 % of make bench's throughput").

The rules watch the metrics the bench's workload sends (:data:`benchmark.workload.LIMITS`),
and are sized on that workload: an account uses 20-110 % of each allotment over the backlog,
so a rule at a fraction ``f`` of the limit fires for about ``(1.1 - f) / 0.9`` of the accounts
it applies to, once each (its cooldown), never on every record. The mix, in a fixed rotation:

* ``at_least`` rules over the billing ``period`` and rolling ``7d`` and ``1d`` windows (the
  backlog's records are all of the last 50 minutes, so the three read the same value: the
  cost measured is that of reading each window, which grows with its days);
* some ``of_limit`` (a fraction of the plan's limit), the others absolute, restricted to one
  plan (``plans``) and sized on its limit;
* a few ``at_most`` rules (judged at a day close, not on records: they cost nothing per record,
  and fire nothing on the bench's fresh accounts, which were not active for their window);
* actions ``none``, ``offer`` and ``upgrade``; cooldowns the default or ``30d``.

Levels (``storage_gb``, a ``max``; ``seats``, a ``latest``) take only ``period`` and ``1d``
windows here. Everything is deterministic for a seed. The catalog is the shipped one
(``config/plans.toml``) with its own ``[[moments]]`` rules taken out and these appended, so
``--moments 0`` measures the shipped catalog without any rule.
"""

from __future__ import annotations

import random
import re
import tomllib
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from benchmark.workload import LIMITS, METRIC_SHARES
from tests.harness import kafka

SHIPPED_CATALOG: Final = Path(__file__).resolve().parents[2] / "config" / "plans.toml"
SUM_WINDOWS: Final = ("period", "7d", "1d")
LEVEL_WINDOWS: Final = ("period", "1d")
LEVELS: Final = frozenset({"storage_gb", "seats"})
AT_MOST_EVERY: Final = 12
"""One rule in this many is an ``at_most`` rule (4 of 50)."""
OF_LIMIT_FRACTIONS: Final = (Decimal("0.5"), Decimal("0.7"), Decimal("0.9"), Decimal("1"))
ABSOLUTE_FRACTIONS: Final = (Decimal("0.6"), Decimal("0.8"), Decimal("1.0"))
"""Absolute thresholds: this fraction of the limit of the one plan the rule applies to."""
SILENT_THRESHOLD: Final = Decimal(10**12)
_HEADER: Final = re.compile(r"^\s*\[")


def generated_rules(count: int, seed: int = 7, *, silent: bool = False) -> list[dict[str, Any]]:
    """``count`` ``[[moments]]`` rules (as TOML-ready dicts) over the bench's metrics.

    ``silent``: the same rules with every ``at_least`` threshold out of reach (absolute,
    :data:`SILENT_THRESHOLD`), so a run measures judging them apart from firing them."""
    rng = random.Random(f"{seed}-moments")  # noqa: S311 - reproducible bench data
    metrics = list(METRIC_SHARES)
    plans = list(LIMITS)
    paid = [p for p in plans if p != "free"]
    rules: list[dict[str, Any]] = []
    for i in range(count):
        metric = metrics[i % len(metrics)]
        windows = LEVEL_WINDOWS if metric in LEVELS else SUM_WINDOWS
        window = windows[(i // len(metrics)) % len(windows)]
        rule: dict[str, Any] = {"id": f"bench-{i:03d}-{metric.replace('_', '-')}"}
        rule["metric"] = metric
        if i % AT_MOST_EVERY == AT_MOST_EVERY - 1:
            # A quiet account: judged at a day close over a rolling window, paid plans only.
            rule["window"] = "1d" if metric in LEVELS else "7d"
            rule["at_most"] = Decimal("0.05")
            rule["of_limit"] = True
            rule["plans"] = paid
            rule["title"] = "A quiet {window_days} days: {value} {unit}"
            rule["body"] = "Only {value} of your {limit} {unit} on {plan_name}."
            rule["action"] = "offer"
            rule["offer"] = "a free onboarding session"
        elif i % 2 == 0:
            rule["window"] = window
            rule["at_least"] = rng.choice(OF_LIMIT_FRACTIONS)
            rule["of_limit"] = True
            if i % 4 == 0:
                rule["plans"] = sorted(rng.sample(plans, 2), key=plans.index)
            rule["title"] = "{value} {unit} of your {limit}"
            rule["body"] = "You reached {threshold} {unit} on {plan_name}."
            rule["action"] = "upgrade"
        else:
            plan = plans[(i // 2) % len(plans)]
            limit = Decimal(str(LIMITS[plan][metric]))
            rule["window"] = window
            rule["at_least"] = (limit * rng.choice(ABSOLUTE_FRACTIONS)).quantize(Decimal(1))
            rule["plans"] = [plan]
            rule["title"] = "{value} {unit} already"
            rule["body"] = "That is {threshold} {unit} or more on {plan_name}."
            rule["action"] = "none" if i % 3 else "offer"
            if rule["action"] == "offer":
                rule["offer"] = "10% off a yearly plan"
        if i % 5 == 4:
            rule["cooldown"] = "30d"
        if silent and "at_least" in rule:
            rule.pop("of_limit", None)
            rule["at_least"] = SILENT_THRESHOLD
        rules.append(rule)
    return rules


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def rules_toml(rules: Sequence[dict[str, Any]]) -> str:
    """The rules as ``[[moments]]`` tables."""
    blocks = []
    for rule in rules:
        lines = ["[[moments]]"] + [f"{k} = {_toml_value(v)}" for k, v in rule.items()]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def without_moments(catalog_text: str) -> str:
    """``catalog_text`` without its ``[[moments]]`` tables (each runs from its header to the
    next table header)."""
    kept: list[str] = []
    dropping = False
    for line in catalog_text.splitlines(keepends=True):
        if _HEADER.match(line):
            dropping = line.strip().startswith("[[moments]]")
        if not dropping:
            kept.append(line)
    return "".join(kept)


def catalog_with_rules(
    count: int, seed: int = 7, base: Path = SHIPPED_CATALOG, *, silent: bool = False
) -> str:
    """The text of ``base`` with its own rules taken out and ``count`` generated ones added."""
    text = without_moments(base.read_text(encoding="utf-8"))
    if count == 0:
        return text
    generated = rules_toml(generated_rules(count, seed, silent=silent))
    return text.rstrip("\n") + "\n\n# --- generated by scripts/benchmark/rules.py ---\n" + generated


def write_catalog(directory: Path, count: int, seed: int = 7, *, silent: bool = False) -> Path:
    """Write :func:`catalog_with_rules` to ``directory`` and return its path."""
    path = directory / f"plans-{count}-moments{'-silent' if silent else ''}.toml"
    path.write_text(catalog_with_rules(count, seed, silent=silent), encoding="utf-8")
    return path


async def create_rule_topics(bootstrap: str, prefix: str, catalog: Path, partitions: int) -> None:
    """Create the event topic of each rule of ``catalog`` (``<prefix>.custom.<id>``) before a
    worker starts, as the worker creates its other event topics (co-partitioned)."""
    document = tomllib.loads(catalog.read_text(encoding="utf-8"))
    topics = {f"{prefix}.custom.{rule['id']}": partitions for rule in document.get("moments", [])}
    if topics:
        await kafka.create_topics(bootstrap, topics)
