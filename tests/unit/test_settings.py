"""Worker settings (contract 5): defaults, one error per bad variable that names it, durations."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import (
    PACKAGED_MESSAGES_FILE,
    PACKAGED_PLANS_FILE,
    VARIABLES,
    Settings,
    load_settings,
    to_ms,
    unknown_variables,
    webhook_secrets,
)
from domain.errors import ConfigError, SettingsError

Env = dict[str, str]


@pytest.fixture
def make_env() -> Callable[..., Env]:
    """Factory: a ``MOMENTS_*`` environment from short names, ``make_env(PARTITIONS="4")``."""

    def make(**short: str) -> Env:
        return {f"MOMENTS_{name}": value for name, value in short.items()}

    return make


def refused(env: Env) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return info.value


# --- defaults -------------------------------------------------------------------------------


def test_defaults_are_the_contracts() -> None:
    s = load_settings({})
    assert s.kafka_bootstrap == ("localhost:9092",)
    assert s.app_id == "usage-moments"
    assert s.web_port == 6066
    assert s.processing_guarantee == "exactly_once"
    assert s.topic_usage == "usage-records"
    assert s.topic_accounts == "account-plans"
    assert s.topic_prefix == "moments"
    assert s.dedup_horizon_s == 7 * 86400
    assert s.max_clock_skew_s == 5 * 60
    assert s.late_grace_s == 3600
    assert s.drop_grace_s == 15 * 60
    assert s.drop_recent_days == 3
    assert s.drop_baseline_weeks == 4
    assert s.drop_min_expected == Decimal(100)
    assert s.drop_fraction == Decimal("0.7")
    assert s.daily_retention_days >= 35
    assert s.plans_file == PACKAGED_PLANS_FILE
    assert s.messages_file == PACKAGED_MESSAGES_FILE
    assert s.security_protocol == "PLAINTEXT"
    assert s.sasl_username is None and s.sasl_password is None


def test_derived_topic_names() -> None:
    s = load_settings({"MOMENTS_TOPIC_USAGE": "u", "MOMENTS_TOPIC_PREFIX": "ev"})
    assert s.topic_usage_dlq == "u.dlq"
    assert s.topic_accounts_dlq == "account-plans.dlq"
    assert s.event_topic("threshold-hit") == "ev.threshold-hit"
    assert s.topic_rekey.startswith("usage-moments")


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_values_mean_the_default(blank: str) -> None:
    env = {v.name: blank for v in VARIABLES}
    assert load_settings(env) == load_settings({})


def test_values_are_stripped_and_choices_fold_case(make_env: Callable[..., Env]) -> None:
    s = load_settings(
        make_env(
            PARTITIONS=" 12 ",
            PROCESSING_GUARANTEE="AT_LEAST_ONCE",
            LOG_LEVEL="Debug",
            SECURITY_PROTOCOL="ssl",
            KAFKA_BOOTSTRAP="a:1, b:2 ,",
        )
    )
    assert s.partitions == 12
    assert s.processing_guarantee == "at_least_once"
    assert s.log_level == "debug"
    assert s.security_protocol == "SSL"
    assert s.kafka_bootstrap == ("a:1", "b:2")


def test_every_variable_is_documented_once() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert all(
        n.startswith("MOMENTS_") and v.accepted for n, v in zip(names, VARIABLES, strict=True)
    )


# --- bad values -----------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, str]] = [
    ("KAFKA_BOOTSTRAP", "localhost"),
    ("KAFKA_BOOTSTRAP", "a:1,b"),
    ("KAFKA_BOOTSTRAP", ",,"),
    ("KAFKA_BOOTSTRAP", "host:port"),
    ("APP_ID", "has space"),
    ("APP_ID", "a/b"),
    ("PARTITIONS", "zero"),
    ("PARTITIONS", "0"),
    ("PARTITIONS", "-1"),
    ("PARTITIONS", "1001"),
    ("PARTITIONS", "8.0"),
    ("PARTITIONS", "0x10"),
    ("REPLICATION", "0"),
    ("REPLICATION", "11"),
    ("STANDBY_REPLICAS", "-1"),
    ("STANDBY_REPLICAS", "two"),
    ("WEB_PORT", "0"),
    ("WEB_PORT", "65536"),
    ("WEB_PORT", "http"),
    ("LOG_LEVEL", "verbose"),
    ("PROCESSING_GUARANTEE", "maybe"),
    ("PROCESSING_GUARANTEE", "exactly-once"),
    ("COMMIT_INTERVAL", "fast"),
    ("COMMIT_INTERVAL", "301s"),
    ("COMMIT_INTERVAL", "-1s"),
    ("TOPIC_USAGE", "usage records"),
    ("TOPIC_USAGE", "usage/records"),
    ("TOPIC_USAGE", "x" * 201),
    ("TOPIC_ACCOUNTS", "plans!"),
    ("TOPIC_PREFIX", "mo ments"),
    ("TOPIC_PREFIX", "ü"),
    ("PLANS_FILE", "/nonexistent/plans.toml"),
    ("MESSAGES_FILE", "/nonexistent/messages.toml"),
    ("DEDUP_HORIZON", "7 days"),
    ("DEDUP_HORIZON", "7D"),
    ("DEDUP_HORIZON", "1y"),
    ("DEDUP_HORIZON", "-7d"),
    ("DEDUP_HORIZON", "1.2.3h"),
    ("MAX_CLOCK_SKEW", "5min"),
    ("LATE_GRACE", "h"),
    ("LATE_GRACE", "1e3s"),
    ("DROP_GRACE", "2d"),
    ("DROP_RECENT_DAYS", "0"),
    ("DROP_RECENT_DAYS", "15"),
    ("DROP_BASELINE_WEEKS", "0"),
    ("DROP_BASELINE_WEEKS", "9"),
    ("DROP_MIN_EXPECTED", "-1"),
    ("DROP_MIN_EXPECTED", "lots"),
    ("DROP_MIN_EXPECTED", "NaN"),
    ("DROP_MIN_EXPECTED", "Infinity"),
    ("DROP_FRACTION", "0"),
    ("DROP_FRACTION", "1"),
    ("DROP_FRACTION", "1.5"),
    ("DROP_FRACTION", "-0.1"),
    ("DROP_FRACTION", "NaN"),
    ("DROP_FRACTION", "70%"),
    ("UNDERUSE_LEVEL", "0"),
    ("UNDERUSE_LEVEL", "1"),
    ("UNDERUSE_LEVEL", "-0.2"),
    ("UNDERUSE_LEVEL", "30%"),
    ("UNDERUSE_LEVEL", "NaN"),
    ("DAILY_RETENTION_DAYS", "34"),
    ("DAILY_RETENTION_DAYS", "401"),
    ("BATCH_SIZE", "0"),
    ("BATCH_SIZE", "100001"),
    ("EVALUATION_CHECK", "50ms"),
    ("EVALUATION_CHECK", "6m"),
    ("CLOCK", "fake"),
    ("ROCKSDB_CACHE_MB", "7"),
    ("ROCKSDB_WRITE_BUFFER_MB", "513"),
    ("STATE_CLEANUP_DELAY", "8d"),
    ("STATE_CLEANUP_DELAY", "soon"),
    ("STATE_STALE_AFTER", "30s"),
    ("STATE_STALE_AFTER", "31d"),
    ("SECURITY_PROTOCOL", "TLS"),
    ("SASL_MECHANISM", "GSSAPI"),
    ("SSL_CAFILE", "/nonexistent/ca.pem"),
    ("SSL_CERTFILE", "/nonexistent/cert.pem"),
    ("SSL_KEYFILE", "/nonexistent/key.pem"),
]


@pytest.mark.parametrize(
    ("short", "value"), BAD_VALUES, ids=[f"{n}={v[:20]}" for n, v in BAD_VALUES]
)
def test_a_bad_value_names_its_variable(short: str, value: str) -> None:
    exc = refused({f"MOMENTS_{short}": value})
    assert exc.variable == f"MOMENTS_{short}"
    assert f"MOMENTS_{short}" in str(exc)
    assert "\n" not in str(exc)
    assert isinstance(exc, ConfigError)


@pytest.mark.parametrize(
    ("short", "value"),
    [
        ("KAFKA_BOOTSTRAP", "localhost:99999"),
        ("TOPIC_USAGE", "."),
        ("TOPIC_ACCOUNTS", ".."),
        ("DEDUP_HORIZON", "1" + "0" * 400 + "w"),
    ],
)
def test_values_kafka_or_the_worker_cannot_use_are_refused(short: str, value: str) -> None:
    exc = refused({f"MOMENTS_{short}": value})
    assert exc.variable == f"MOMENTS_{short}"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize(
    ("given_vars", "missing"),
    [
        ({}, "MOMENTS_SASL_USERNAME"),
        ({"MOMENTS_SASL_PASSWORD": "pw"}, "MOMENTS_SASL_USERNAME"),
        ({"MOMENTS_SASL_USERNAME": "svc"}, "MOMENTS_SASL_PASSWORD"),
    ],
)
def test_sasl_needs_username_and_password(protocol: str, given_vars: Env, missing: str) -> None:
    exc = refused({"MOMENTS_SECURITY_PROTOCOL": protocol, **given_vars})
    assert exc.variable == missing
    assert missing in str(exc) and protocol in str(exc)
    assert "pw" not in str(exc)


def test_sasl_with_credentials_is_accepted() -> None:
    s = load_settings(
        {
            "MOMENTS_SECURITY_PROTOCOL": "SASL_SSL",
            "MOMENTS_SASL_MECHANISM": "SCRAM-SHA-512",
            "MOMENTS_SASL_USERNAME": "svc",
            "MOMENTS_SASL_PASSWORD": "hunter2",
        }
    )
    assert (s.security_protocol, s.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert s.sasl_password is not None
    assert (s.sasl_username, s.sasl_password.get_secret_value()) == ("svc", "hunter2")


@pytest.mark.parametrize(
    ("recent", "weeks", "retention", "ok"),
    [
        ("3", "4", "35", True),  # 3 + 28 = 31
        ("7", "4", "35", True),  # 35 exactly
        ("8", "4", "35", False),  # 36
        ("14", "8", "69", False),  # 70
        ("14", "8", "70", True),
    ],
)
def test_retention_must_cover_recent_days_and_baseline(
    make_env: Callable[..., Env], recent: str, weeks: str, retention: str, ok: bool
) -> None:
    env = make_env(
        DROP_RECENT_DAYS=recent, DROP_BASELINE_WEEKS=weeks, DAILY_RETENTION_DAYS=retention
    )
    if ok:
        assert load_settings(env).daily_retention_days == int(retention)
    else:
        exc = refused(env)
        assert exc.variable == "MOMENTS_DAILY_RETENTION_DAYS"
        assert str(int(recent) + 7 * int(weeks)) in str(exc)


def test_existing_files_are_accepted(tmp_path: Path, make_env: Callable[..., Env]) -> None:
    plans = tmp_path / "plans.toml"
    plans.write_text("", encoding="utf-8")
    ca = tmp_path / "ca.pem"
    ca.write_text("", encoding="utf-8")
    s = load_settings(make_env(PLANS_FILE=str(plans), SSL_CAFILE=str(ca)))
    assert (s.plans_file, s.ssl_cafile) == (plans, ca)


def test_a_directory_is_not_a_plans_file(tmp_path: Path) -> None:
    assert refused({"MOMENTS_PLANS_FILE": str(tmp_path)}).variable == "MOMENTS_PLANS_FILE"


# --- integers and durations -----------------------------------------------------------------

INT_RANGES = [
    ("PARTITIONS", "partitions", 1, 1000),
    ("REPLICATION", "replication", 1, 10),
    ("WEB_PORT", "web_port", 1, 65535),
    ("BATCH_SIZE", "batch_size", 1, 100_000),
    ("ROCKSDB_CACHE_MB", "rocksdb_cache_mb", 8, 65536),
]


@pytest.mark.parametrize(("short", "attr", "low", "high"), INT_RANGES)
@given(data=st.data())
def test_integers_inside_their_range_only(
    short: str, attr: str, low: int, high: int, data: st.DataObject
) -> None:
    number = data.draw(st.integers(min_value=low - 10**6, max_value=high + 10**6))
    env = {f"MOMENTS_{short}": str(number)}
    if low <= number <= high:
        assert getattr(load_settings(env), attr) == number
    else:
        assert refused(env).variable == f"MOMENTS_{short}"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1500ms", 1.5),
        ("2s", 2.0),
        ("2", 2.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("0s", 0.0),
        (" 3 m ", 180.0),
    ],
)
def test_durations_parse_every_unit(text: str, seconds: float) -> None:
    assert load_settings({"MOMENTS_DEDUP_HORIZON": text}).dedup_horizon_s == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("1.005s", 1005), ("50ms", 50), ("0.5", 500), ("7d", 604_800_000), ("1h", 3_600_000)],
)
def test_durations_become_milliseconds_in_one_place(text: str, ms: int) -> None:
    # Held in seconds; to_ms rounds, so float error (1.005 * 1000 = 1004.99...) costs no ms.
    assert to_ms(load_settings({"MOMENTS_LATE_GRACE": text}).late_grace_s) == ms


@pytest.mark.parametrize(
    ("short", "value", "accepted"),
    [
        ("DROP_GRACE", "2d", "a duration up to 1d"),
        ("COMMIT_INTERVAL", "301s", "a duration up to 5m"),
        ("EVALUATION_CHECK", "50ms", "a duration from 100ms to 5m"),
        ("PARTITIONS", "0", "an integer from 1 to 1000"),
        ("LOG_LEVEL", "loud", "debug, info, warning, error or critical"),
    ],
)
def test_the_accepted_text_comes_from_the_declared_bounds(
    short: str, value: str, accepted: str
) -> None:
    exc = refused({f"MOMENTS_{short}": value})
    assert str(exc) == f"MOMENTS_{short}={value!r} is not valid: expected {accepted}"


def test_batch_window_is_no_longer_read() -> None:
    # Parsed and never used before; now a typo-like unknown name, reported as such.
    assert unknown_variables({"MOMENTS_BATCH_WINDOW": "50ms"}) == ["MOMENTS_BATCH_WINDOW"]
    assert "batch_window_s" not in load_settings({"MOMENTS_BATCH_WINDOW": "11s"}).summary()


UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@given(amount=st.integers(min_value=0, max_value=10**6), unit=st.sampled_from(sorted(UNIT_S)))
def test_any_whole_duration_parses(amount: int, unit: str) -> None:
    s = load_settings({"MOMENTS_LATE_GRACE": f"{amount}{unit}"})
    assert s.late_grace_s == pytest.approx(amount * UNIT_S[unit])


@given(text=st.text(alphabet="0123456789.msdhwxy -", min_size=1, max_size=8))
def test_a_duration_is_parsed_or_refused_by_name(text: str) -> None:
    try:
        value = load_settings({"MOMENTS_MAX_CLOCK_SKEW": text}).max_clock_skew_s
    except SettingsError as exc:
        assert exc.variable == "MOMENTS_MAX_CLOCK_SKEW"
    else:
        assert value >= 0


# --- summary and typos ----------------------------------------------------------------------


def test_summary_masks_the_password() -> None:
    s = load_settings(
        {
            "MOMENTS_SECURITY_PROTOCOL": "SASL_SSL",
            "MOMENTS_SASL_USERNAME": "svc",
            "MOMENTS_SASL_PASSWORD": "s3cr3t-value",
        }
    )
    summary = s.summary()
    assert summary["sasl_password"] == "***"  # noqa: S105
    assert summary["sasl_username"] == "svc"
    assert "s3cr3t-value" not in repr(summary)
    assert "s3cr3t-value" not in repr(s)


def test_summary_lists_every_setting_as_text() -> None:
    summary = load_settings({}).summary()
    assert set(summary) == set(Settings.model_fields)
    assert all(isinstance(v, str) for v in summary.values())
    assert summary["sasl_password"] == "(unset)"  # noqa: S105
    assert summary["kafka_bootstrap"] == "localhost:9092"
    assert summary["web_port"] == "6066"


def test_only_the_password_the_web_token_and_the_receiver_secret_are_secret() -> None:
    assert {v.name for v in VARIABLES if v.secret} == {
        "MOMENTS_SASL_PASSWORD",
        "MOMENTS_WEB_TOKEN",
        "MOMENTS_RECEIVER_SECRET",
    }


RECEIVER_SECRETS = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_c2Vjb25kLXNlY3JldC1vZi0yNA=="


def test_the_receiver_secrets_are_a_masked_comma_separated_list() -> None:
    s = load_settings({"MOMENTS_RECEIVER_SECRET": RECEIVER_SECRETS})
    assert s.receiver_secret is not None
    assert webhook_secrets(s.receiver_secret.get_secret_value()) == (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_c2Vjb25kLXNlY3JldC1vZi0yNA==",
    )
    assert s.summary()["receiver_secret"] == "***"  # noqa: S105
    assert "MfKQ9r8" not in repr(s)


@pytest.mark.parametrize("text", ["plain", "whsec_", "whsec_short", "whsec_not-base64!!!!!!!!!!!"])
def test_a_receiver_secret_that_is_not_whsec_base64_is_refused_unshown(text: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"MOMENTS_RECEIVER_SECRET": f"{RECEIVER_SECRETS},{text}"})
    assert "MOMENTS_RECEIVER_SECRET" in str(caught.value)
    assert "***" in str(caught.value)
    assert "MfKQ9r8" not in str(caught.value)


def test_the_cloudevents_source_defaults_to_the_app_id() -> None:
    assert load_settings({}).event_source == "/usage-moments/usage-moments"
    assert load_settings({"MOMENTS_APP_ID": "acme"}).event_source == "/usage-moments/acme"
    given = load_settings({"MOMENTS_CLOUDEVENTS_SOURCE": "https://acme.example/moments"})
    assert given.event_source == "https://acme.example/moments"


@pytest.mark.parametrize("text", ["has space", "tab\there", "ünïcode", "x" * 501])
def test_a_cloudevents_source_that_is_not_a_uri_reference_is_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="MOMENTS_CLOUDEVENTS_SOURCE"):
        load_settings({"MOMENTS_CLOUDEVENTS_SOURCE": text})


def test_the_web_token_is_masked_and_must_be_long() -> None:
    s = load_settings({"MOMENTS_WEB_TOKEN": "a-token-of-20-chars!"})
    assert s.web_token is not None
    assert s.web_token.get_secret_value() == "a-token-of-20-chars!"  # noqa: S105
    assert s.summary()["web_token"] == "***"  # noqa: S105
    assert "a-token-of-20-chars!" not in repr(s)
    with pytest.raises(SettingsError) as err:
        load_settings({"MOMENTS_WEB_TOKEN": "short-secret"})
    assert "MOMENTS_WEB_TOKEN" in str(err.value)
    assert "short-secret" not in str(err.value)


def test_event_loop_is_uvloop_unless_asyncio_is_asked_for() -> None:
    assert load_settings({}).event_loop == "uvloop"
    assert load_settings({"MOMENTS_EVENT_LOOP": "AsyncIO"}).event_loop == "asyncio"
    with pytest.raises(SettingsError, match="MOMENTS_EVENT_LOOP"):
        load_settings({"MOMENTS_EVENT_LOOP": "trio"})


def test_log_format_is_text_or_json() -> None:
    assert load_settings({}).log_format == "text"
    assert load_settings({"MOMENTS_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="MOMENTS_LOG_FORMAT"):
        load_settings({"MOMENTS_LOG_FORMAT": "logfmt"})


def test_unknown_variables_finds_typos() -> None:
    env = {
        "MOMENTS_PARTITION": "8",
        "MOMENTS_PARTITIONS": "8",
        "MOMENTS_KAFKA_BOOTSTRAPS": "x:1",
        "PATH": "/bin",
        "moments_partitions": "8",
    }
    assert unknown_variables(env) == ["MOMENTS_KAFKA_BOOTSTRAPS", "MOMENTS_PARTITION"]
    assert unknown_variables({v.name: "x" for v in VARIABLES}) == []


def test_underuse_level_defaults_to_the_catalogs_and_overrides_it() -> None:
    assert load_settings({}).underuse_level is None  # the catalog's underuse_level
    assert load_settings({"MOMENTS_UNDERUSE_LEVEL": "0.25"}).underuse_level == Decimal("0.25")
