"""The usage pass: a step's usage records in, folded state and their events out.

The records go down once, through the intake (:func:`domain.intake.batch.run_intake`), then
threshold detection (:func:`domain.moments.detection.detect_thresholds`) over what the intake
accepted, milestone detection over what it found due, then the ``at_least`` rules of
``[[moments]]`` (:func:`domain.moments.custom.detect_custom`) over what it accepted; the
caller gets one :class:`UsageOutcome` holding the state to write back and the events to send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from domain.intake.batch import IntakeResult, IntakeRules, IntakeState, Raw, run_intake
from domain.moments.custom import CustomRules, WindowSnapshots, detect_custom
from domain.moments.detection import Moment, detect_thresholds
from domain.moments.milestones import detect_milestones
from domain.plans.catalog import Catalog
from domain.rules.custom import RuleFirings
from domain.rules.thresholds import AnnouncedLevels
from domain.wording.templates import Templates


@dataclass(frozen=True, slots=True)
class UsageContext:
    """What every usage step of a worker shares: the intake's rules, the catalog, the
    templates, and the clock that stamps ``emitted_at`` (when each event is made, not the
    step's start)."""

    rules: IntakeRules
    catalog: Catalog
    templates: Templates
    clock: Callable[[], int]


@dataclass(frozen=True, slots=True)
class UsageState:
    """The step's state as the usage pass reads it: the intake's lookups and the levels each
    account announced this period."""

    intake: IntakeState
    announced_of: Callable[[str], AnnouncedLevels]
    #: The rule firings of an account (``[[moments]]``); without it no rule is judged.
    firings_of: Callable[[str], RuleFirings] | None = None


@dataclass(frozen=True, slots=True)
class UsageOutcome:
    """What a usage step decided: the intake's outcomes and state, the accounts' announced
    levels and rule firings to write back, and the events in emission order (thresholds,
    milestones, then the rules of ``[[moments]]``)."""

    intake: IntakeResult
    announced: dict[str, AnnouncedLevels]
    moments: list[Moment]
    firings: dict[str, RuleFirings] = field(default_factory=dict)


def run_usage(
    records: Iterable[Raw], state: UsageState, context: UsageContext, *, now_ms: int
) -> UsageOutcome:
    """Fold ``records`` into ``state`` and judge what they changed (see the module doc)."""
    rules, catalog, templates, clock = (
        context.rules,
        context.catalog,
        context.templates,
        context.clock,
    )
    intake_state = state.intake
    custom = CustomRules.of(catalog)
    snapshots: WindowSnapshots | None = None
    judged = bool(custom.at_least) and state.firings_of is not None
    if judged and custom.rolling and intake_state.daily_of is not None:
        # Rolling windows are replayed record by record from the days before the batch.
        snapshots = WindowSnapshots(custom.rolling)
        intake_state = replace(intake_state, daily_of=snapshots.wrap(intake_state.daily_of))
    try:
        intake = run_intake(records, intake_state, now_ms=now_ms, rules=rules, catalog=catalog)
    finally:
        if snapshots is not None:
            snapshots.release()
    detected = detect_thresholds(
        intake.accepted,
        now_ms=now_ms,
        prune_before_ms=now_ms - rules.late_grace_ms - 1,
        catalog=catalog,
        templates=templates,
        announced_of=state.announced_of,
        clock=clock,
    )
    celebrated = detect_milestones(
        intake.milestones_due,
        lifetime_of=intake.lifetime.__getitem__,  # the intake's objects: marks go on them
        catalog=catalog,
        templates=templates,
        now_ms=now_ms,
        clock=clock,
    )
    moments = [*detected.moments, *celebrated.moments]
    if not judged or state.firings_of is None:
        return UsageOutcome(intake, detected.announced, moments)
    fired = detect_custom(
        intake.accepted,
        catalog=catalog,
        snapshots=snapshots,
        new_distinct=intake.distinct,
        firings_of=state.firings_of,
        clock=clock,
        late=intake.late_daily,
    )
    moments.extend(fired.moments)
    return UsageOutcome(intake, detected.announced, moments, fired.firings)
