"""Measure what a distinct value of a ``unique_count`` metric costs (docs/capacity.md).

No broker: the distinct table's storage is one RocksDB entry per (account, metric, scope,
value) and its changelog one 24-byte entry in a segment record, so this writes
``--accounts`` x ``--users`` values the way the usage step does (one step per account and
day, its keys marked with their expiry, in a real partition store), for ``--days`` days
(each value held for its day and its billing period), then flushes and compacts the store and
reads its live SST bytes per column family, and encodes the same steps' changelog segments.

    .venv/bin/python scripts/capacity_distinct.py --accounts 1000 --users 100 --days 3

It prints bytes per distinct value (RocksDB, changelog) and the projection for 10,000
accounts with 1,000 active users each, every user active every day for the kept days.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from capacity import column_family_bytes

from domain.intake.distinct import day_expiry, day_scope, distinct_key, period_expiry
from domain.plans.periods import Period, utc_day
from state.expiring import encode_segment
from state.store import StoreOptions, open_partition
from state.transaction import StepState
from tables.distinct import EXPIRY, key_hash, mark_distinct

_DAY_MS = 86_400_000
_START = 1_764_547_200_000  # 2025-12-01T00:00:00Z: a month of days from here
_RETENTION_DAYS = 35
_GRACE_MS = 3_600_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100, help="active users per account")
    parser.add_argument("--days", type=int, default=3, help="days, every user active each")
    args = parser.parse_args(argv)
    period = Period.from_ms(_START, _START + 31 * _DAY_MS)
    period_expires = period_expiry(period, _GRACE_MS)
    columns = ("distinct", EXPIRY)
    changelog = 0
    segments = 0
    values = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="distinct-capacity-") as root:
        store = open_partition(
            Path(root), 0, columns, StoreOptions(cache_mb=64, write_buffer_mb=16)
        )
        for day_index in range(args.days):
            day = utc_day(_START + day_index * _DAY_MS)
            for account in range(args.accounts):
                state = StepState(store)
                by_expiry: dict[int, list[bytes]] = {}
                for user in range(args.users):
                    value = f'"user-{user:06d}"'
                    account_id = f"acct-{account:07d}"
                    scope = day_scope(day)
                    by_expiry.setdefault(day_expiry(day, _RETENTION_DAYS), []).append(
                        key_hash(distinct_key(account_id, "active_users", scope, value))
                    )
                    if day_index == 0:  # a user is new in the period once
                        by_expiry.setdefault(period_expires, []).append(
                            key_hash(distinct_key(account_id, "active_users", f"p{_START}", value))
                        )
                mark_distinct(state, by_expiry)
                updates = state.updates()
                for segment in encode_segment(updates["distinct"]):
                    changelog += len(segment)
                    segments += 1
                values += len(updates["distinct"])
                store.apply(updates)
        store.close()
        sizes = column_family_bytes(Path(root))
    seconds = time.monotonic() - started
    kept, index = sizes.get("distinct", 0), sizes.get(EXPIRY, 0)
    per_value_db = (kept + index) / values
    per_value_log = changelog / values
    print(f"distinct values written: {values:,} in {segments:,} steps, {seconds:.1f} s")
    print(f"RocksDB live SST: distinct {kept:,} B, index {index:,} B")
    print(f"per distinct value: RocksDB {per_value_db:.1f} B, changelog {per_value_log:.1f} B")
    # 10,000 accounts x 1,000 users, each active every day: one value per kept day (35) and
    # one per open period (the current one; two around a period's end).
    held = 10_000 * 1_000 * (_RETENTION_DAYS + 1)
    print(
        f"10,000 accounts x 1,000 daily active users: {held:,} values held, "
        f"RocksDB {held * per_value_db / 1e9:.1f} GB, "
        f"changelog {held * per_value_log / 1e9:.1f} GB (spread over the partitions)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
