"""Account-plans handler: keeps the accounts table in step with the billing system.

Contract 1.2: tombstones forget the account (all of its state, and a record older
than the tombstone is ignored after it), a record older than the one held is
ignored, a plan missing from the catalog, a record without a key (or any invalid
record) goes to the dead-letter topic, and an invalid optional entry (a limit <= 0)
is left out, logged and counted while the rest applies. A record that changes an account
already held (its plan, status, members or region) sends one ``account-change`` event per
change (contract 3.6, rules in :mod:`domain.moments.changes`), in the step that applies it.

A record keyed by its account but found on another partition than murmur2 gives the account
(a producer with another partitioner) is not applied where it is: it is forwarded, inside
the step's transaction, to that partition of the worker's ``<app id>-plans-forwarded`` topic,
handled here too, and applied there only (a tombstone as a marker that keeps its time).
There it meets the records already placed right: ``updated_at`` orders plan records as
always; a forwarded tombstone forgets the account when it arrives, like any tombstone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from agents.anniversaries import schedule_timers
from agents.forwarding import Misplaced
from app.main import Runtime
from config.settings import to_ms
from domain.common.timeutil import DAY_MS
from domain.errors import InvalidPlanRecord
from domain.intake.accounts import (
    AccountPlan,
    active_since,
    known_since,
    period_of,
    supersedes,
)
from domain.intake.deadletter import dead_letter
from domain.intake.partitioning import (
    account_partition,
    forwarded_tombstone,
    forwarded_tombstone_at,
    key_partition,
)
from domain.intake.records import parse_plan
from domain.intake.regroup import periods_change, regroup_totals
from domain.moments.changes import change_events, diff_accounts
from domain.moments.custom import CustomRules
from domain.wording.kinds import Kind
from engine.step import Step
from state import jsonbytes
from tables.accounts import plan_of, put_plan
from tables.anniversary_passes import keep_closed_after
from tables.daily import daily_of
from tables.forget import forget_account, forgotten_at
from tables.totals import has_totals, put_totals, totals_of

logger = logging.getLogger(__name__)

KIND: Final[Kind] = "account-change"


class PlansHandler:
    """Handles the account-plans topic."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.dlq_topic = settings.topic_accounts_dlq
        self.forward_topic = settings.topic_plans_forward
        self.partitions = settings.partitions
        self.late_grace_ms = to_ms(settings.late_grace_s)
        self.misplaced = Misplaced(runtime.metrics)
        # Only at_most rules read active_since: without them plans are stored as before.
        self.tracks_activity = bool(CustomRules.of(runtime.catalog).at_most)
        #: (account, its partition) of the current step's forwarded records.
        self.forwarded: list[tuple[str, int]] = []
        #: Fields of the current step's invalid entries left out (counted on commit).
        self.left_out: list[str] = []
        #: Arrival times (ms) of the current step's account-change events (counted on commit).
        self.changes_arrived: list[int] = []

    def apply(self, step: Step, topic: str, record: Any) -> str:
        """Apply one account-plans record to the step; returns its outcome."""
        state = step.state
        if record.key is None:
            # Where usage is keyed by account, a keyless plan lands on a partition its
            # account's usage never reads (contract 1.2).
            return self._refuse(
                step, topic, record, "key: missing; key account-plans records by account id"
            )
        key = record.key.decode("utf-8", "replace")
        value = record.value
        deleted_ms = int(record.timestamp) if value is None else None
        if deleted_ms is None and topic == self.forward_topic:
            deleted_ms = forwarded_tombstone_at(value)
        if deleted_ms is not None:
            home = key_partition(record.key, self.partitions)
            if home != step.partition:
                return self._forward(step, record, key, forwarded_tombstone(deleted_ms), home)
            forget_account(state, key, deleted_ms)
            return "tombstone"
        try:
            parsed = parse_plan(value, self.runtime.catalog)
        except InvalidPlanRecord as exc:
            return self._refuse(step, topic, record, str(exc))
        if key != parsed.account_id:
            return self._refuse(
                step,
                topic,
                record,
                f"account_id: {parsed.account_id!r} differs from the record key {key!r}; "
                f"key account-plans records by account id",
            )
        account = parsed.account_id
        home = account_partition(account, self.partitions)
        if home != step.partition:
            return self._forward(step, record, account, value, home)
        held = plan_of(state, account)
        if held is None:
            forgotten = forgotten_at(state, account)
            if forgotten is not None and parsed.updated_at_ms < forgotten:
                return "stale"  # older than the tombstone that deleted the account
        elif not supersedes(parsed, held):
            return "stale"
        arrived_ms = int(record.timestamp)
        # A producer's clock may run ahead: known since no later than the worker's clock.
        since = known_since(held, min(arrived_ms, step.now_ms))
        # Built once (carry_active_since on a plan built without it made two per record).
        active = (
            active_since(held, parsed.status, parsed.plan_id, arrived_ms)
            if self.tracks_activity
            else None
        )
        plan = AccountPlan.from_record(parsed, since, active)
        if periods_change(held, plan):
            self._regroup(step, account, plan)
        put_plan(state, account, plan)
        # Birthdays from the record's arrival (contract 3.7): one that arrived on the day and
        # is handled after midnight (lag, downtime) is still that day's, unless long past.
        grace_ms = self.late_grace_ms
        since_ms = max(min(step.now_ms, arrived_ms), step.now_ms - DAY_MS - grace_ms)
        schedule_timers(state, step.partition, held, plan, self.runtime.catalog, since_ms)
        if held is not None:
            self._announce_changes(step, held, plan, arrived_ms)
        for reason in parsed.left_out:
            self.left_out.append(reason.partition(":")[0].partition(".")[0])
            logger.warning(
                "account-plans[%d]@%d: left out %s; the rest of the record applies",
                step.partition,
                record.offset,
                reason,
            )
        return "applied"

    def _regroup(self, step: Step, account: str, plan: AccountPlan) -> None:
        """Put the account's totals in ``plan``'s periods (contract 2: usage sent before the
        plan, or before an anchor change, counts in the period it falls in)."""
        state = step.state
        if not has_totals(state, account):
            return
        grace_ms = to_ms(self.runtime.settings.late_grace_s)
        # As the usage path prunes: closed periods whose anniversary may still come (ending
        # after the last complete pass's cut) keep their totals, or their recap is empty.
        keep_ms = min(step.now_ms - grace_ms - 1, keep_closed_after(state, step.partition))
        totals = regroup_totals(
            daily_of(state, account), plan, self.runtime.catalog, keep_end_after_ms=keep_ms
        )
        put_totals(state, account, totals)

    def _announce_changes(
        self, step: Step, held: AccountPlan, plan: AccountPlan, arrived_ms: int
    ) -> None:
        """Send the account-change events of ``held`` becoming ``plan`` (contract 3.6)."""
        rt = self.runtime
        changes = diff_accounts(held, plan, rt.catalog)
        if not changes:
            return
        # Plan changes say where the current period stands: the period containing now,
        # under the new plan (its totals were just regrouped if its anchor moved).
        period = period_of(plan, step.now_ms, rt.catalog)
        totals = totals_of(step.state, plan.account_id)
        # A gauge held only as a carry still stands in the period (its last reading).
        metrics = (*totals.periods, *totals.carry)
        usage = {metric: totals.total(metric, period) for metric in metrics}
        events = change_events(
            templates=rt.templates,
            catalog=rt.catalog,
            account=plan,
            changes=changes,
            period=period,
            totals=usage,
            emitted_at_ms=rt.clock.now_ms(),
        )
        key = plan.account_id.encode()
        for event in events:
            rt.send_event(step, KIND, key, event)
            self.changes_arrived.append(arrived_ms)

    def _forward(self, step: Step, record: Any, account: str, value: bytes, home: int) -> str:
        """Send ``record`` to its account's partition ``home``, to be applied there only."""
        step.send(self.forward_topic, record.key, value, home)
        self.forwarded.append((account, home))
        return "forwarded"

    def _refuse(self, step: Step, topic: str, record: Any, reason: str) -> str:
        letter = dead_letter(
            reason, topic, step.partition, record.offset, record.value, step.now_ms
        )
        step.send(self.dlq_topic, record.key, jsonbytes.dumps(letter))
        return "invalid"

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """Dead-letter a record the engine found unprocessable; it counts as ``invalid``."""
        self._refuse(step, topic, record, reason)
        metrics = self.runtime.metrics
        step.on_commit(lambda: metrics.plan_records.labels(outcome="invalid").inc())

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Apply every record in order (a later one sees the earlier ones' writes)."""
        self.left_out = []
        self.changes_arrived = []
        self.forwarded = []
        outcomes: Counter[str] = Counter(self.apply(step, topic, r) for r in records)
        if self.forwarded:
            # Counted where they are applied; here, as forwarded.
            del outcomes["forwarded"]
            account, home = self.forwarded[0]
            self.misplaced.forwarded(
                step, topic, len(self.forwarded), account, step.partition, home
            )
        left_out = Counter(self.left_out)
        arrivals = self.changes_arrived
        metrics = self.runtime.metrics
        clock = self.runtime.clock

        def count() -> None:
            for outcome, n in outcomes.items():
                metrics.plan_records.labels(outcome=outcome).inc(n)
            for name, n in left_out.items():
                metrics.plan_entries_left_out.labels(field=name).inc(n)
            if arrivals:
                metrics.events.labels(kind=KIND).inc(len(arrivals))
                emitted_s = clock.now_ms() / 1000
                for arrived_ms in arrivals:
                    metrics.event_latency.observe(max(0.0, emitted_s - arrived_ms / 1000))

        step.on_commit(count)
