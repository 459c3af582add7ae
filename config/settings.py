"""Worker settings: every ``MOMENTS_*`` variable, parsed once into one frozen object.

All variable names live in :data:`VARIABLES`; nothing else in the code base reads
the environment. A wrong value raises :class:`~domain.errors.SettingsError`, whose
one-line message names the variable and what is accepted, so start-up stops with
something an operator can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, get_args

from domain.common.timeutil import parse_rfc3339_ms
from domain.errors import SettingsError

ProcessingGuarantee = Literal["exactly_once", "at_least_once"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
ClockKind = Literal["wall", "manual"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

PACKAGED_PLANS_FILE = Path(__file__).with_name("plans.toml")
PACKAGED_MESSAGES_FILE = Path(__file__).with_name("messages.toml")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9._\[\]:-]+:\d{1,5}$")


def _valid_topic(name: str) -> bool:
    # Kafka's own rule: legal characters, at most 249, and not "." or "..".
    return bool(_TOPIC.match(name)) and name not in (".", "..")


def _valid_hostport(text: str) -> bool:
    return bool(_HOSTPORT.match(text)) and 0 < int(text.rpartition(":")[2]) <= 65535


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its name, default (as text) and what it accepts."""

    name: str
    default: str | None
    accepted: str
    doc: str
    secret: bool = False


def _v(name: str, default: str | None, accepted: str, doc: str, secret: bool = False) -> Variable:
    return Variable(f"MOMENTS_{name}", default, accepted, doc, secret)


#: Every variable the worker reads, in the order the README documents them.
VARIABLES: tuple[Variable, ...] = (
    _v("KAFKA_BOOTSTRAP", "localhost:9092", "comma-separated host:port list", "Kafka brokers"),
    _v(
        "APP_ID",
        "usage-moments",
        "letters, digits, . _ -",
        "consumer group and prefix of internal topics",
    ),
    _v(
        "DATA_DIR",
        "./moments-data",
        "a writable directory",
        "RocksDB state of this worker process (one per process)",
    ),
    _v(
        "PARTITIONS",
        "8",
        "an integer from 1 to 1000",
        "partitions of the topics the worker creates",
    ),
    _v(
        "REPLICATION",
        "1",
        "an integer from 1 to 10",
        "replication factor of the topics the worker creates",
    ),
    _v(
        "STANDBY_REPLICAS",
        "1",
        "an integer from 0 to 10",
        "warm standby copies of each table partition on other workers",
    ),
    _v("WEB_HOST", "0.0.0.0", "a host name or IP address to bind", "HTTP bind address"),  # noqa: S104
    _v(
        "WEB_PORT",
        "6066",
        "an integer from 1 to 65535",
        "HTTP port (/metrics, /healthz, /readyz, /accounts/{id})",
    ),
    _v(
        "WEB_ADVERTISED_HOST",
        None,
        "a host name other workers can reach",
        "host in this worker's URL for peers (default: the machine's host name)",
    ),
    _v(
        "WEB_TOKEN",
        None,
        "a bearer token of at least 16 characters",
        "when set, /accounts/{id} and /clock require `Authorization: Bearer <token>`; "
        "unset, they answer loopback clients only (others get 403) "
        "(/metrics, /healthz, /readyz and /status stay open; never logged)",
        secret=True,
    ),
    _v("LOG_LEVEL", "info", "debug, info, warning, error or critical", "log level"),
    _v(
        "LOG_FORMAT",
        "text",
        "text or json",
        "json: one JSON object per line (time, level, logger, message, account_id, partition)",
    ),
    _v(
        "PROCESSING_GUARANTEE",
        "exactly_once",
        "exactly_once or at_least_once",
        "Kafka transactions (exactly_once) or plain commits",
    ),
    _v(
        "COMMIT_INTERVAL",
        "1s",
        "a duration such as 500ms, 1s, 2m",
        "accepted for compatibility; every step commits its own transaction (no commit timer)",
    ),
    _v(
        "TOPIC_USAGE",
        "usage-records",
        "a Kafka topic name",
        "usage records input; its dead letters go to NAME.dlq",
    ),
    _v(
        "TOPIC_ACCOUNTS",
        "account-plans",
        "a Kafka topic name",
        "compacted account plans input; dead letters to NAME.dlq",
    ),
    _v(
        "TOPIC_PREFIX",
        "moments",
        "a Kafka topic name prefix",
        "event topics are PREFIX.<kind>: PREFIX.threshold-near, PREFIX.threshold-hit, "
        "PREFIX.sudden-drop, PREFIX.usage-recovered, PREFIX.milestone, "
        "PREFIX.billing-anniversary, PREFIX.account-change",
    ),
    _v("PLANS_FILE", str(PACKAGED_PLANS_FILE), "a readable TOML file", "plan catalog"),
    _v("MESSAGES_FILE", str(PACKAGED_MESSAGES_FILE), "a readable TOML file", "message templates"),
    _v(
        "DEDUP_HORIZON",
        "7d",
        "a duration such as 12h, 7d",
        "a repeated record_id within this horizon counts once",
    ),
    _v("MAX_CLOCK_SKEW", "5m", "a duration", "records further in the future than this are invalid"),
    _v("LATE_GRACE", "1h", "a duration", "after a period ends plus this, its records are late"),
    _v(
        "DROP_GRACE",
        "15m",
        "a duration",
        "a UTC day is evaluated for drops this long after it closes",
    ),
    _v(
        "DROP_RECENT_DAYS",
        "3",
        "an integer from 1 to 14",
        "complete days compared with the baseline",
    ),
    _v(
        "DROP_BASELINE_WEEKS",
        "4",
        "an integer from 1 to 8",
        "weeks of same-weekday history forming the baseline",
    ),
    _v(
        "DROP_MIN_EXPECTED",
        "100",
        "a number >= 0",
        "expected volume below which no drop is reported",
    ),
    _v(
        "DROP_FRACTION",
        "0.7",
        "a number strictly between 0 and 1",
        "recent <= (1 - fraction) * expected is a drop",
    ),
    _v(
        "UNDERUSE_LEVEL",
        None,
        "a number strictly between 0 and 1",
        "billing anniversaries suggest a downgrade when every limited metric stayed at or "
        "below this fraction of its limit (default: the catalog's underuse_level, 0.3)",
    ),
    _v("DAILY_RETENTION_DAYS", "35", "an integer from 35 to 400", "days of daily totals kept"),
    _v(
        "BATCH_SIZE",
        "10000",
        "an integer from 1 to 100000",
        "most records one fetch hands to the engine (a step per partition of them)",
    ),
    _v(
        "BATCH_WINDOW",
        "50ms",
        "a duration up to 10s",
        "accepted for compatibility; the engine takes whatever a fetch returns",
    ),
    _v(
        "EVALUATION_CHECK",
        "5s",
        "a duration from 100ms to 5m",
        "how often a worker checks whether a closed day awaits drop evaluation",
    ),
    _v(
        "SESSION_TIMEOUT",
        "10s",
        "a duration from 6s to 5m",
        "how long the group waits for a silent worker before moving its partitions",
    ),
    _v(
        "INSTANCE_ID",
        None,
        "letters, digits, . _ - (unique per worker, stable across restarts)",
        "static group membership: a restart within the session timeout keeps the "
        "worker's partitions without a rebalance (e.g. a StatefulSet pod name)",
    ),
    _v(
        "SHUTDOWN_TIMEOUT",
        "30s",
        "a duration from 1s to 10m",
        "on SIGTERM, the worker commits what it finished and exits within this",
    ),
    _v(
        "CLOCK",
        "wall",
        "wall, manual or manual:<RFC 3339 instant>",
        "manual: time starts now (or at the given instant) and moves only by POST /clock (tests)",
    ),
    _v(
        "ROCKSDB_CACHE_MB",
        "256",
        "an integer from 8 to 65536",
        "total RocksDB block cache of this worker, shared out over its table partitions",
    ),
    _v(
        "ROCKSDB_WRITE_BUFFER_MB",
        "4",
        "an integer from 1 to 512",
        "RocksDB memtable size per table partition",
    ),
    _v(
        "STATE_CLEANUP_DELAY",
        "10m",
        "a duration up to 7d",
        "the local store of a partition this worker holds neither as active nor as standby "
        "is deleted this long after it was let go (or after start, for stores found on disk)",
    ),
    _v(
        "STATE_STALE_AFTER",
        "12h",
        "a duration from 1m to 30d, below the changelog topics' delete.retention.ms "
        "(Kafka's default: 1d)",
        "a local store last in sync with its changelogs longer ago than this is wiped and "
        "restored from the beginning instead of resumed: compaction may have removed "
        "deletions it has not read",
    ),
    _v(
        "SECURITY_PROTOCOL",
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
        "Kafka security protocol",
    ),
    _v("SASL_MECHANISM", "PLAIN", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", "SASL mechanism"),
    _v("SASL_USERNAME", None, "a user name", "SASL user"),
    _v("SASL_PASSWORD", None, "a password", "SASL password (never logged)", secret=True),
    _v("SSL_CAFILE", None, "a readable PEM file", "CA bundle for SSL"),
    _v("SSL_CERTFILE", None, "a readable PEM file", "client certificate for SSL"),
    _v("SSL_KEYFILE", None, "a readable PEM file", "client key for SSL"),
)
_BY_NAME = {v.name: v for v in VARIABLES}


@dataclass(frozen=True, slots=True)
class Settings:
    """The worker's configuration; build it with :func:`load_settings`."""

    kafka_bootstrap: tuple[str, ...]
    app_id: str
    data_dir: Path
    partitions: int
    replication: int
    standby_replicas: int
    web_host: str
    web_port: int
    web_advertised_host: str | None
    web_token: str | None = field(repr=False)
    log_level: LogLevel
    log_format: LogFormat
    processing_guarantee: ProcessingGuarantee
    commit_interval_s: float
    topic_usage: str
    topic_accounts: str
    topic_prefix: str
    plans_file: Path
    messages_file: Path
    dedup_horizon_s: float
    max_clock_skew_s: float
    late_grace_s: float
    drop_grace_s: float
    drop_recent_days: int
    drop_baseline_weeks: int
    drop_min_expected: Decimal
    drop_fraction: Decimal
    underuse_level: Decimal | None
    daily_retention_days: int
    batch_size: int
    batch_window_s: float
    evaluation_check_s: float
    session_timeout_s: float
    instance_id: str | None
    shutdown_timeout_s: float
    clock: ClockKind
    clock_start_ms: int | None
    rocksdb_cache_mb: int
    rocksdb_write_buffer_mb: int
    state_cleanup_delay_s: float
    state_stale_after_s: float
    security_protocol: SecurityProtocol
    sasl_mechanism: SaslMechanism
    sasl_username: str | None
    sasl_password: str | None = field(repr=False)
    ssl_cafile: Path | None
    ssl_certfile: Path | None
    ssl_keyfile: Path | None

    @property
    def topic_usage_dlq(self) -> str:
        """Dead-letter topic of usage records: always the usage topic plus ``.dlq``."""
        return f"{self.topic_usage}.dlq"

    @property
    def topic_accounts_dlq(self) -> str:
        """Dead-letter topic of account plans."""
        return f"{self.topic_accounts}.dlq"

    @property
    def topic_ticks(self) -> str:
        """Internal topic of day-close ticks that trigger drop evaluation per partition."""
        return f"{self.app_id}-ticks"

    @property
    def topic_rekey(self) -> str:
        """Internal topic of usage records whose key was not their account id."""
        return f"{self.app_id}-usage-rekeyed"

    @property
    def topic_plans_forward(self) -> str:
        """Internal topic of account-plans records found on another partition than their
        account's (placed by a partitioner other than murmur2), forwarded there."""
        return f"{self.app_id}-plans-forwarded"

    def event_topic(self, kind: str) -> str:
        """Topic of one event kind, e.g. ``moments.threshold-hit``."""
        return f"{self.topic_prefix}.{kind}"

    def summary(self) -> dict[str, str]:
        """Every setting as text for logs and ``check-config``; secrets masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("sasl_password", "web_token"):
                out[f.name] = "***" if value else "(unset)"
            elif isinstance(value, tuple):
                out[f.name] = ",".join(value)
            else:
                out[f.name] = "(unset)" if value is None else str(value)
        return out


class _Reader:
    """Reads variables from one environment mapping, raising on the first bad one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, key: str) -> str | None:
        var = _BY_NAME[f"MOMENTS_{key}"]
        value = self.env.get(var.name)
        if value is None or value.strip() == "":
            return var.default
        return value.strip()

    def fail(self, key: str, value: str) -> SettingsError:
        var = _BY_NAME[f"MOMENTS_{key}"]
        shown = "***" if var.secret else value
        return SettingsError(var.name, shown, var.accepted)

    def text(self, key: str) -> str:
        value = self.raw(key)
        if value is None:  # only variables without a default can be missing
            raise self.fail(key, "")
        return value

    def optional(self, key: str) -> str | None:
        return self.raw(key)

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.text(key)
        try:
            number = int(value)
        except ValueError:
            raise self.fail(key, value) from None
        if not low <= number <= high:
            raise self.fail(key, value)
        return number

    def decimal(self, key: str, check: Callable[[Decimal], bool]) -> Decimal:
        value = self.text(key)
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise self.fail(key, value) from None
        if not number.is_finite() or not check(number):
            raise self.fail(key, value)
        return number

    def duration_s(self, key: str, high_s: float = math.inf, low_s: float = 0.0) -> float:
        value = self.text(key)
        match = _DURATION.match(value)
        if match is None:
            raise self.fail(key, value)
        seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
        if not math.isfinite(seconds):
            raise self.fail(key, value)
        if not low_s <= seconds <= high_s:
            raise self.fail(key, value)
        return seconds

    def choice(self, key: str, options: tuple[str, ...], *, fold: bool = True) -> str:
        value = self.text(key)
        candidate = value.lower() if fold else value.upper()
        if candidate not in options:
            raise self.fail(key, value)
        return candidate

    def topic(self, key: str) -> str:
        value = self.text(key)
        if not _valid_topic(value):
            raise self.fail(key, value)
        return value

    def path(self, key: str, *, must_exist: bool) -> Path | None:
        value = self.optional(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        if must_exist and not path.is_file():
            raise self.fail(key, value)
        return path


def _instance_id(r: _Reader) -> str | None:
    value = r.optional("INSTANCE_ID")
    if value is not None and not _valid_topic(value):
        raise r.fail("INSTANCE_ID", value)
    return value


def _web_token(r: _Reader) -> str | None:
    value = r.optional("WEB_TOKEN")
    # Short tokens are guessable over a network; whitespace would not survive a header.
    if value is not None and (len(value) < 16 or any(c.isspace() for c in value)):
        raise r.fail("WEB_TOKEN", value)
    return value


def _underuse_level(r: _Reader) -> Decimal | None:
    if r.optional("UNDERUSE_LEVEL") is None:
        return None  # the catalog's
    return r.decimal("UNDERUSE_LEVEL", lambda d: 0 < d < 1)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse ``MOMENTS_*`` variables from ``env`` (usually ``os.environ``).

    Raises:
        SettingsError: the first variable with a value that is not accepted.
    """
    r = _Reader(env)
    brokers = tuple(b.strip() for b in r.text("KAFKA_BOOTSTRAP").split(",") if b.strip())
    if not brokers or not all(_valid_hostport(b) for b in brokers):
        raise r.fail("KAFKA_BOOTSTRAP", r.text("KAFKA_BOOTSTRAP"))
    app_id = r.text("APP_ID")
    if not _valid_topic(app_id):
        raise r.fail("APP_ID", app_id)
    plans_file = r.path("PLANS_FILE", must_exist=True) or PACKAGED_PLANS_FILE
    messages_file = r.path("MESSAGES_FILE", must_exist=True) or PACKAGED_MESSAGES_FILE
    protocol = r.choice("SECURITY_PROTOCOL", get_args(SecurityProtocol), fold=False)
    username = r.optional("SASL_USERNAME")
    password = r.optional("SASL_PASSWORD")
    if protocol.startswith("SASL") and (username is None or password is None):
        missing = "MOMENTS_SASL_USERNAME" if username is None else "MOMENTS_SASL_PASSWORD"
        raise SettingsError(missing, "", f"a value when MOMENTS_SECURITY_PROTOCOL={protocol}")
    clock_text = r.text("CLOCK")
    clock_kind, _, clock_start = clock_text.partition(":")
    if clock_kind not in get_args(ClockKind) or (clock_start and clock_kind != "manual"):
        raise r.fail("CLOCK", clock_text)
    try:
        clock_start_ms = parse_rfc3339_ms(clock_start) if clock_start else None
    except ValueError:
        raise r.fail("CLOCK", clock_text) from None
    settings = Settings(
        kafka_bootstrap=brokers,
        app_id=app_id,
        data_dir=Path(r.text("DATA_DIR")).expanduser(),
        partitions=r.integer("PARTITIONS", 1, 1000),
        replication=r.integer("REPLICATION", 1, 10),
        standby_replicas=r.integer("STANDBY_REPLICAS", 0, 10),
        web_host=r.text("WEB_HOST"),
        web_port=r.integer("WEB_PORT", 1, 65535),
        web_advertised_host=r.optional("WEB_ADVERTISED_HOST"),
        web_token=_web_token(r),
        log_level=r.choice("LOG_LEVEL", get_args(LogLevel)),  # type: ignore[arg-type]  # checked against the Literal's args
        log_format=r.choice("LOG_FORMAT", get_args(LogFormat)),  # type: ignore[arg-type]  # checked against the Literal's args
        processing_guarantee=r.choice("PROCESSING_GUARANTEE", get_args(ProcessingGuarantee)),  # type: ignore[arg-type]  # checked against the Literal's args
        commit_interval_s=r.duration_s("COMMIT_INTERVAL", high_s=300),
        topic_usage=r.topic("TOPIC_USAGE"),
        topic_accounts=r.topic("TOPIC_ACCOUNTS"),
        topic_prefix=r.topic("TOPIC_PREFIX"),
        plans_file=plans_file,
        messages_file=messages_file,
        dedup_horizon_s=r.duration_s("DEDUP_HORIZON"),
        max_clock_skew_s=r.duration_s("MAX_CLOCK_SKEW"),
        late_grace_s=r.duration_s("LATE_GRACE"),
        drop_grace_s=r.duration_s("DROP_GRACE", high_s=86400),
        drop_recent_days=r.integer("DROP_RECENT_DAYS", 1, 14),
        drop_baseline_weeks=r.integer("DROP_BASELINE_WEEKS", 1, 8),
        drop_min_expected=r.decimal("DROP_MIN_EXPECTED", lambda d: d >= 0),
        drop_fraction=r.decimal("DROP_FRACTION", lambda d: 0 < d < 1),
        underuse_level=_underuse_level(r),
        daily_retention_days=r.integer("DAILY_RETENTION_DAYS", 35, 400),
        batch_size=r.integer("BATCH_SIZE", 1, 100_000),
        batch_window_s=r.duration_s("BATCH_WINDOW", high_s=10),
        evaluation_check_s=r.duration_s("EVALUATION_CHECK", low_s=0.1, high_s=300),
        session_timeout_s=r.duration_s("SESSION_TIMEOUT", low_s=6, high_s=300),
        instance_id=_instance_id(r),
        shutdown_timeout_s=r.duration_s("SHUTDOWN_TIMEOUT", low_s=1, high_s=600),
        clock=clock_kind,  # type: ignore[arg-type]  # checked against the Literal's args
        clock_start_ms=clock_start_ms,
        rocksdb_cache_mb=r.integer("ROCKSDB_CACHE_MB", 8, 65536),
        rocksdb_write_buffer_mb=r.integer("ROCKSDB_WRITE_BUFFER_MB", 1, 512),
        state_cleanup_delay_s=r.duration_s("STATE_CLEANUP_DELAY", high_s=7 * 86400),
        state_stale_after_s=r.duration_s("STATE_STALE_AFTER", low_s=60, high_s=30 * 86400),
        security_protocol=protocol,  # type: ignore[arg-type]  # checked against the Literal's args
        sasl_mechanism=r.choice("SASL_MECHANISM", get_args(SaslMechanism), fold=False),  # type: ignore[arg-type]  # checked against the Literal's args
        sasl_username=username,
        sasl_password=password,
        ssl_cafile=r.path("SSL_CAFILE", must_exist=True),
        ssl_certfile=r.path("SSL_CERTFILE", must_exist=True),
        ssl_keyfile=r.path("SSL_KEYFILE", must_exist=True),
    )
    retention_needed = settings.drop_recent_days + 7 * settings.drop_baseline_weeks
    if settings.daily_retention_days < retention_needed:
        raise SettingsError(
            "MOMENTS_DAILY_RETENTION_DAYS",
            str(settings.daily_retention_days),
            "at least MOMENTS_DROP_RECENT_DAYS + 7 * MOMENTS_DROP_BASELINE_WEEKS"
            f" = {retention_needed}",
        )
    return settings


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """``MOMENTS_*`` names in ``env`` that no setting reads (likely typos)."""
    return sorted(k for k in env if k.startswith("MOMENTS_") and k not in _BY_NAME)


def log_options(env: Mapping[str, str]) -> tuple[LogLevel, LogFormat]:
    """Log level and format for setting up logging before the settings are checked.

    A bad value gives the default here: :func:`load_settings` then refuses it, and that
    message is logged with the defaults.
    """
    r = _Reader(env)
    out: list[str] = []
    for key, options in (("LOG_LEVEL", get_args(LogLevel)), ("LOG_FORMAT", get_args(LogFormat))):
        try:
            out.append(r.choice(key, options))
        except SettingsError:
            out.append(_BY_NAME[f"MOMENTS_{key}"].default or options[0])
    return out[0], out[1]  # type: ignore[return-value]  # checked against the Literals' args
