"""Topic settings checked at start (issue 16, item 10): fixes that only keep more data,
refusals naming the topic and setting, warnings for inputs the worker does not own."""

from __future__ import annotations

import pytest

from app.topology import TopicSettings, check_settings, required_topics
from config.settings import Settings, load_settings
from domain.errors import TopologyError
from tables.accounts import ACCOUNTS
from tables.dedup import dedup_table
from tables.distinct import distinct_table

DAY_MS = 86_400_000


@pytest.fixture
def settings() -> Settings:
    return load_settings({"MOMENTS_DEDUP_HORIZON": "7d"})


def _specs(settings: Settings) -> list:  # type: ignore[type-arg]
    return required_topics(settings, (ACCOUNTS, dedup_table(7 * DAY_MS)))


def _dedup(settings: Settings) -> str:
    return dedup_table(7 * DAY_MS).changelog_topic(settings.app_id)


def _accounts(settings: Settings) -> str:
    return ACCOUNTS.changelog_topic(settings.app_id)


def _described(**topics: dict[str, str]) -> dict[str, TopicSettings]:
    return {name: TopicSettings(values, values) for name, values in topics.items()}


def test_topics_as_the_worker_creates_them_need_nothing(settings: Settings) -> None:
    specs = _specs(settings)
    described = {s.name: TopicSettings(s.config(), s.config()) for s in specs}
    assert check_settings(settings, specs, described) == ([], [])


def test_a_short_dedup_retention_is_raised_to_the_horizon_plus_a_day(settings: Settings) -> None:
    dedup = _dedup(settings)
    described = {
        dedup: TopicSettings(
            {"cleanup.policy": "delete", "retention.ms": str(2 * DAY_MS), "retention.bytes": "-1"},
            {"retention.ms": str(2 * DAY_MS)},
        )
    }
    [fix], warnings = check_settings(settings, _specs(settings), described)
    assert warnings == []
    assert fix.topic == dedup
    assert fix.changes == {"retention.ms": str(8 * DAY_MS)}
    assert "MOMENTS_DEDUP_HORIZON" in fix.reasons[0]


@pytest.mark.parametrize("retention", [str(8 * DAY_MS), str(30 * DAY_MS), "-1"])
def test_a_retention_long_enough_is_never_lowered(settings: Settings, retention: str) -> None:
    described = _described(
        **{
            _dedup(settings): {
                "cleanup.policy": "delete",
                "retention.ms": retention,
                "retention.bytes": "-1",
            }
        }
    )
    assert check_settings(settings, _specs(settings), described) == ([], [])


def test_the_brokers_size_cap_is_lifted_in_the_same_change(settings: Settings) -> None:
    dedup = _dedup(settings)
    described = {
        dedup: TopicSettings(
            {"cleanup.policy": "delete", "retention.ms": "1000", "retention.bytes": "1073741824"},
            {"retention.ms": "1000"},  # retention.bytes is the broker's default
        )
    }
    [fix], _ = check_settings(settings, _specs(settings), described)
    assert fix.changes == {"retention.ms": str(8 * DAY_MS), "retention.bytes": "-1"}


def test_a_size_cap_set_on_the_dedup_changelog_is_refused(settings: Settings) -> None:
    dedup = _dedup(settings)
    described = _described(
        **{
            dedup: {
                "cleanup.policy": "delete",
                "retention.ms": str(8 * DAY_MS),
                "retention.bytes": "1000",
            }
        }
    )
    with pytest.raises(TopologyError, match=f"set retention.bytes=-1 on {dedup}"):
        check_settings(settings, _specs(settings), described)


@pytest.mark.parametrize("policy", ["delete", "compact,delete"])
def test_a_table_changelog_is_set_back_to_compaction(settings: Settings, policy: str) -> None:
    accounts = _accounts(settings)
    described = _described(**{accounts: {"cleanup.policy": policy}})
    [fix], _ = check_settings(settings, _specs(settings), described)
    assert (fix.topic, fix.changes, fix.lossy) == (accounts, {"cleanup.policy": "compact"}, True)


def test_account_plans_without_compaction_are_reported_not_changed(settings: Settings) -> None:
    described = _described(**{settings.topic_accounts: {"cleanup.policy": "delete"}})
    fixes, [warning] = check_settings(settings, _specs(settings), described)
    assert fixes == []
    assert f"set cleanup.policy=compact on {settings.topic_accounts}" in warning


def test_a_short_distinct_retention_is_raised_naming_what_it_keeps(settings: Settings) -> None:
    table = distinct_table(37 * DAY_MS)
    name = table.changelog_topic(settings.app_id)
    described = {
        name: TopicSettings(
            {"cleanup.policy": "delete", "retention.ms": str(8 * DAY_MS), "retention.bytes": "-1"},
            {"retention.ms": str(8 * DAY_MS)},
        )
    }
    [fix], warnings = check_settings(settings, required_topics(settings, (table,)), described)
    assert warnings == []
    assert fix.changes == {"retention.ms": str(37 * DAY_MS)}
    assert "every distinct value of open periods and kept days" in fix.reasons[0]
    assert "DEDUP" not in fix.reasons[0]
