"""Start-up topic layout check (contract 1.2, 3, 5): co-partitioned inputs, required topics."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.topology import EVENT_KINDS, check_layout, required_topics
from config.settings import Settings, load_settings
from domain.errors import ConfigError, TopologyError


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    def make(partitions: int = 8, **short: str) -> Settings:
        env = {f"MOMENTS_{k}": v for k, v in short.items()}
        env["MOMENTS_PARTITIONS"] = str(partitions)
        return load_settings(env)

    return make


CONTRACT_TOPICS = {
    "usage-records",
    "account-plans",
    "usage-records.dlq",
    "account-plans.dlq",
    "moments.threshold-near",
    "moments.threshold-hit",
    "moments.sudden-drop",
    "moments.usage-recovered",
    "moments.milestone",
    "moments.billing-anniversary",
    "moments.account-change",
    "moments.birthday",
}


def test_required_topics(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(6)
    specs = {s.name: s for s in required_topics(settings)}
    assert len(specs) == len(required_topics(settings))  # no topic twice
    assert CONTRACT_TOPICS | {settings.topic_rekey} <= set(specs)
    assert all(s.partitions == 6 for s in specs.values())
    assert [n for n, s in specs.items() if s.compacted] == ["account-plans"]
    co_partitioned = {n for n, s in specs.items() if s.co_partitioned}
    assert {"usage-records", "account-plans", settings.topic_rekey} <= co_partitioned
    # Outputs are written to their input's partition number, so they must match too.
    assert {"usage-records.dlq", "account-plans.dlq"} <= co_partitioned
    assert {f"moments.{kind}" for kind in EVENT_KINDS} <= co_partitioned
    # Every topic beyond the contract's is internal: prefixed by the app id.
    assert all(n.startswith(f"{settings.app_id}-") for n in set(specs) - CONTRACT_TOPICS)


def test_required_topics_follow_the_names_in_settings(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(TOPIC_USAGE="u", TOPIC_ACCOUNTS="p", TOPIC_PREFIX="ev", APP_ID="app")
    names = {s.name for s in required_topics(settings)}
    assert {"u", "p", "u.dlq", "p.dlq", settings.topic_rekey} <= names
    assert {f"ev.{k}" for k in EVENT_KINDS} <= names
    assert settings.topic_rekey.startswith("app")


@pytest.mark.parametrize(
    "existing",
    [
        {},
        {"usage-records": 8},
        {"usage-records": 8, "account-plans": 8, "usage-moments-usage-rekeyed": 8},
        {"usage-records.dlq": 8, "moments.threshold-hit": 8, "unrelated": 99},
    ],
)
def test_a_fitting_layout_passes(
    make_settings: Callable[..., Settings], existing: dict[str, int]
) -> None:
    check_layout(make_settings(8), existing)


@pytest.mark.parametrize("topic", ["usage-records.dlq", "moments.threshold-hit"])
def test_an_output_topic_with_another_partition_count_is_refused(
    make_settings: Callable[..., Settings], topic: str
) -> None:
    with pytest.raises(TopologyError, match=f"recreate {topic} with 8 partitions"):
        check_layout(make_settings(8), {topic: 3})


@pytest.mark.parametrize(("usage", "plans"), [(8, 4), (4, 8), (1, 2)])
def test_inputs_must_be_co_partitioned(
    make_settings: Callable[..., Settings], usage: int, plans: int
) -> None:
    with pytest.raises(TopologyError) as info:
        check_layout(make_settings(8), {"usage-records": usage, "account-plans": plans})
    message = str(info.value)
    assert f"usage-records has {usage} partitions but account-plans has {plans}" in message
    assert "same count" in message
    assert isinstance(info.value, ConfigError)


def co_partitioned(settings: Settings) -> list[str]:
    return [s.name for s in required_topics(settings) if s.co_partitioned]


@pytest.mark.parametrize("index", range(2))
def test_inputs_must_match_moments_partitions(
    make_settings: Callable[..., Settings], index: int
) -> None:
    settings = make_settings(8)
    topic = co_partitioned(settings)[index]  # usage-records, account-plans
    with pytest.raises(TopologyError) as info:
        check_layout(settings, {topic: 12})
    message = str(info.value)
    assert f"{topic} has 12 partitions but MOMENTS_PARTITIONS=8" in message
    assert "set MOMENTS_PARTITIONS=12" in message


def test_every_co_partitioned_topic_is_checked(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(8)
    for topic in co_partitioned(settings):
        with pytest.raises(TopologyError, match="MOMENTS_PARTITIONS=8"):
            check_layout(settings, {topic: 3})


@given(partitions=st.integers(1, 20), counts=st.lists(st.none() | st.integers(1, 20), max_size=8))
def test_layout_passes_exactly_when_every_input_present_has_the_count(
    partitions: int, counts: list[int | None]
) -> None:
    settings = load_settings({"MOMENTS_PARTITIONS": str(partitions)})
    existing = {
        name: count
        for name, count in zip(co_partitioned(settings), counts, strict=False)
        if count is not None
    }
    fits = all(count == partitions for count in existing.values())
    try:
        check_layout(settings, existing)
    except TopologyError:
        assert not fits
    else:
        assert fits
