"""The capacity model of docs/capacity.md, computed from scripts/capacity.py's figures.

    .venv/bin/python scripts/capacity_model.py SMALL.json [LARGE.json]

SMALL.json (e.g. 10,000 accounts) gives the per-account and per-dedup-key bytes and
the model's tables (markdown); LARGE.json (e.g. 100,000 accounts), when given, is the
check: what SMALL predicted for it against what it measured, and the restore rate
from the two rebuilds (the difference of their times over the difference of their
changelog bytes, so the fixed start-up cost drops out).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

# docs/benchmark.md (quiet machine): one exactly_once worker, and two in one group.
RPS_PER_WORKER = 31_600
TWO_WORKER_SCALING = 1.88
UTILISATION = 0.7
"""Plan workers to run at 70 % of the measured rate: room for bursts and catch-up."""
HORIZON_DAYS = 7  # MOMENTS_DEDUP_HORIZON default
RETENTION_DAYS = 35  # MOMENTS_DAILY_RETENTION_DAYS default
STANDBY = 1  # MOMENTS_STANDBY_REPLICAS default
SEGMENT_BYTES_PER_KEY = 24  # tables/dedup.py: 16-byte hash + 8-byte time per entry
RATES = (100_000, 1_000_000)
ACCOUNTS = (1_000_000, 10_000_000)
ACCOUNT_COLUMNS = (
    "accounts",
    "period-totals",
    "lifetime",
    "announced",
    "anniversaries",
    "due",
    "birthdays",
)
"""Per-account column families that hold one entry per account (or per account and
metric), whatever the history; ``daily`` holds one entry per account and UTC day."""


def load(path: str) -> dict[str, Any]:
    """One figures file of scripts/capacity.py."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def per_account(fig: dict[str, Any]) -> tuple[float, float]:
    """(bytes per account without daily totals, bytes per account-day of daily totals)."""
    cf = fig["column_family_bytes"]
    fixed = sum(cf.get(c, 0) for c in ACCOUNT_COLUMNS) / fig["accounts"]
    daily = cf.get("daily", 0) / fig["accounts"]
    return fixed, daily


def gb(n: float) -> str:
    """Bytes as GB (or TB past 1,000 GB)."""
    return f"{n / 1e12:,.1f} TB" if n >= 1e12 else f"{n / 1e9:,.1f} GB"


def model(fig: dict[str, Any], restore_s_per_gb: float | None) -> None:
    """Print the model's tables."""
    fixed, daily = per_account(fig)
    key = fig["bytes_per_dedup_key"]
    steady_account = fixed + daily * RETENTION_DAYS
    per_worker = RPS_PER_WORKER * (TWO_WORKER_SCALING / 2) * UTILISATION
    print(f"bytes per account (one day of history): {fixed + daily:,.0f}")
    print(
        f"bytes per account, steady ({RETENTION_DAYS} days of daily totals): {steady_account:,.0f}"
    )
    print(f"bytes per dedup key: {key:,.1f}")
    print(f"planned records/s per worker: {per_worker:,.0f}\n")
    print(
        "| load | workers | partitions | dedup state (fleet, x2 standby) | dedup changelog (x1) |"
    )
    print("|---|---:|---:|---:|---:|")
    for rate in RATES:
        workers = math.ceil(rate / per_worker)
        partitions = 12 * math.ceil(2 * workers / 12)
        keys = rate * HORIZON_DAYS * 86_400
        state = keys * key * (1 + STANDBY)
        changelog = rate * (HORIZON_DAYS + 1) * 86_400 * SEGMENT_BYTES_PER_KEY
        print(f"| {rate:,} records/s | {workers} | {partitions} | {gb(state)} | {gb(changelog)} |")
    print(
        "\n| accounts | account state (x1) | fleet disk with standby | "
        "restore of the whole account state |"
    )
    print("|---|---:|---:|---:|")
    for accounts in ACCOUNTS:
        state = accounts * steady_account
        restore = f"{state / 1e9 * restore_s_per_gb:,.0f} s" if restore_s_per_gb else "n/a"
        print(f"| {accounts:,} | {gb(state)} | {gb(state * (1 + STANDBY))} | {restore} |")


def check(small: dict[str, Any], large: dict[str, Any]) -> float | None:
    """Print SMALL's prediction for LARGE against LARGE's measurement; the restore rate."""
    scale_a = large["accounts"] / small["accounts"]
    scale_k = large["table_keys"].get("dedup", large["records"]) / small["table_keys"].get(
        "dedup", small["records"]
    )
    rows = [
        ("account state", small["account_state_bytes"] * scale_a, large["account_state_bytes"]),
        ("dedup state", small["dedup_state_bytes"] * scale_k, large["dedup_state_bytes"]),
        ("bytes per account", small["bytes_per_account"], large["bytes_per_account"]),
        ("bytes per dedup key", small["bytes_per_dedup_key"], large["bytes_per_dedup_key"]),
        (
            "changelog bytes",
            small["changelog_total_bytes"] * scale_a,
            large["changelog_total_bytes"],
        ),
        ("data dir (du)", small["data_dir_du_bytes"] * scale_a, large["data_dir_du_bytes"]),
    ]
    print("| figure | predicted | measured | off by |")
    print("|---|---:|---:|---:|")
    for name, predicted, measured in rows:
        print(
            f"| {name} | {predicted:,.1f} | {measured:,.1f} | "
            f"{(measured - predicted) / predicted:+.1%} |"
        )
    extra_bytes = large["changelog_total_bytes"] - small["changelog_total_bytes"]
    extra_s = large["rebuild_s"] - small["rebuild_s"]
    if extra_bytes <= 0 or extra_s <= 0:
        return None
    rate = extra_s / (extra_bytes / 1e9)
    print(
        f"\nrestore: {extra_s:.1f} s more for {extra_bytes / 1e6:,.0f} MB more changelog "
        f"= {rate:,.0f} s per GB"
    )
    return rate


def main(argv: list[str]) -> int:
    """Print the check (with two files) and the model."""
    small = load(argv[0])
    restore = check(small, load(argv[1])) if len(argv) > 1 else None
    print()
    model(small, restore)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
