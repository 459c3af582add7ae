"""CPU cost of the ``[[moments]]`` rules on the usage path (contract 3.8), with no Kafka around.

Runs the workload of ``scripts/profile_domain.py`` through
:func:`domain.moments.usage.run_usage` (intake, thresholds, milestones, and the ``at_least``
rules), twice per pass: with the shipped catalog, and with the shipped catalog plus
``--rules`` generated rules over the workload's metrics (a mix of rolling windows of 1 to 30
days and ``"period"``, absolute and ``of_limit`` thresholds, plan filters, a fifth of them
``at_most``, which cost nothing here), each with state lookups that decode JSON as a store
would and write back what they changed. Prints the best of ``--repeat`` passes in
microseconds of CPU per record for each, the difference, and the custom events fired.

Usage::

    .venv/bin/python scripts/profile_rules.py [--rules 50] [--records 100000] [--repeat 3]
        [--cprofile N]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import pstats
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import orjson

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.intake.accounts import AccountPlan  # noqa: E402
from domain.intake.batch import IntakeState  # noqa: E402
from domain.intake.daily import AccountDaily  # noqa: E402
from domain.intake.usage import AccountTotals  # noqa: E402
from domain.moments.usage import UsageContext, UsageState, run_usage  # noqa: E402
from domain.plans.catalog import Catalog, parse_catalog  # noqa: E402
from domain.rules.custom import RuleFirings  # noqa: E402
from domain.rules.thresholds import AnnouncedLevels  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "profile_domain", ROOT / "scripts" / "profile_domain.py"
)

profile_domain: Any = importlib.util.module_from_spec(_spec)
sys.modules["profile_domain"] = profile_domain
_spec.loader.exec_module(profile_domain)

_WINDOWS: Final = ("1d", "3d", "7d", "14d", "30d", "period")
_PLANS: Final = ("free", "starter", "growth", "scale")


def generated_rules(count: int, metrics: list[str], scale: float = 1.0) -> str:
    """``count`` ``[[moments]]`` tables over ``metrics``, deterministic; absolute thresholds
    times ``scale`` (higher: fewer firings; other than 1: no ``of_limit`` rules either, so a
    large scale measures the judging alone)."""
    tables: list[str] = []
    for i in range(count):
        metric = metrics[i % len(metrics)]
        window = _WINDOWS[i % len(_WINDOWS)]
        at_most = i % 5 == 4 and window != "period"
        of_limit = i % 3 == 1 and scale == 1.0
        amount = (0.2 + (i % 4) * 0.25) if of_limit else round(10 ** (1 + i % 4) * scale)
        lines = [
            "[[moments]]",
            f'id = "rule-{i}"',
            f'metric = "{metric}"',
            f'window = "{window}"',
            f"{'at_most' if at_most else 'at_least'} = {amount}",
            f"of_limit = {'true' if of_limit else 'false'}",
            'title = "{value} {unit}"',
            'body = "{value} of {threshold} {unit} on {plan_name} ({limit}); {upgrade_plan_name}."',
            f'action = "{("upgrade", "none", "pause", "downgrade")[i % 4]}"',
        ]
        if i % 7 == 3:
            lines.append(f'plans = ["{_PLANS[i % 4]}", "{_PLANS[(i + 1) % 4]}"]')
        tables.append("\n".join(lines))
    return "\n\n" + "\n\n".join(tables) + "\n"


def run(work: Any, catalog: Catalog) -> tuple[float, Counter[str]]:
    """One pass over every batch through ``run_usage``: CPU seconds, and the events by kind."""
    seeded = work.stores
    plans, totals = dict(seeded.plans), dict(seeded.totals)
    daily, announced = dict(seeded.daily), dict(seeded.announced)
    dedup: dict[str, bytes] = {}
    firings: dict[str, bytes] = {}
    loads, dumps = orjson.loads, orjson.dumps

    def plan_of(account: str) -> AccountPlan | None:
        held = plans.get(account)
        return None if held is None else AccountPlan.from_json(loads(held))

    def seen_at(key: str) -> int | None:
        held = dedup.get(key)
        return None if held is None else int(held)

    state = UsageState(
        IntakeState(
            plan_of=plan_of,
            totals_of=lambda a: AccountTotals.from_json(
                None if (held := totals.get(a)) is None else loads(held)
            ),
            seen_at=seen_at,
            daily_of=lambda a: AccountDaily.from_json(
                None if (held := daily.get(a)) is None else loads(held)
            ),
        ),
        announced_of=lambda a: AnnouncedLevels.from_json(
            None if (held := announced.get(a)) is None else loads(held)
        ),
        firings_of=lambda a: RuleFirings.from_json(
            None if (held := firings.get(a)) is None else loads(held)
        ),
    )
    now_ms = profile_domain.NOW_MS
    context = UsageContext(profile_domain.RULES, catalog, work.templates, lambda: now_ms)
    kinds: Counter[str] = Counter()
    start = time.thread_time()
    for batch in work.batches:
        outcome = run_usage(batch, state, context, now_ms=now_ms)
        result = outcome.intake
        for account, held in result.totals.items():
            totals[account] = dumps(held.to_json())
        for key, seen_ms in result.seen.items():
            dedup[key] = str(seen_ms).encode()
        for account, days in result.daily.items():
            daily[account] = dumps(days.to_json())
        for account, levels in outcome.announced.items():
            announced[account] = dumps(levels.to_json())
        for account, fired in outcome.firings.items():
            firings[account] = dumps(fired.to_json())
        for moment in outcome.moments:
            dumps(moment.payload)
            kinds[moment.kind] += 1
    return time.thread_time() - start, kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="absolute thresholds times this (fewer firings)"
    )
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    workload_args = argparse.Namespace(
        records=args.records,
        accounts=args.accounts,
        batch=5_000,
        partitions=8,
        seeded=0.9,
        zipf=0.9,
        seed=7,
    )
    work = profile_domain.build(workload_args)
    shipped = work.catalog
    text = (ROOT / "config" / "plans.toml").read_text("utf-8")
    metrics = list(profile_domain.METRIC_SHARES)
    ruled = parse_catalog(text + generated_rules(args.rules, metrics, args.scale), "generated")
    timings: dict[str, list[float]] = {"without rules": [], f"{args.rules} rules": []}
    fired: Counter[str] = Counter()
    for _ in range(args.repeat):
        for label, catalog in (("without rules", shipped), (f"{args.rules} rules", ruled)):
            seconds, kinds = run(work, catalog)
            timings[label].append(seconds)
            if catalog is ruled:
                fired = Counter({k: n for k, n in kinds.items() if k.startswith("custom.")})
    best = {label: min(values) * 1e6 / args.records for label, values in timings.items()}
    for label, us in best.items():
        print(f"{label:>16}: {us:7.2f} us/record")
    base, with_rules = best.values()
    print(f"{'difference':>16}: {with_rules - base:+7.2f} us/record ({with_rules / base - 1:+.1%})")
    print(f"custom events fired: {sum(fired.values())} by {len(fired)} rules")
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(work, ruled)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
