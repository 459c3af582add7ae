"""Worker settings: every ``MOMENTS_*`` variable, declared once, parsed once into one frozen object.

Each field of :class:`Settings` is one variable: its type, its default (as the text an operator
would write), what it accepts and what it means. The variable is the field's name in capitals
after ``MOMENTS_``; a duration's field ends in ``_s`` (seconds, the one unit durations are held
in) and its variable drops that suffix. :data:`VARIABLES`, the README's settings table and the
checks of the deployment files are read from these fields; nothing else in the code base reads
the environment. A wrong value raises :class:`~domain.errors.SettingsError`, whose one-line
message names the variable and what is accepted, so start-up stops with something an operator
can act on.

The declaration is pydantic (a frozen ``BaseModel``) fed by :func:`load_settings` from the mapping
it is given, rather than pydantic-settings reading ``os.environ`` itself: tests and
``moments check-config`` pass the environment explicitly, and every value is text parsed the way
the README describes (``7d``, ``a:1,b:2``), not JSON.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_core import core_schema

from domain.common.timeutil import parse_rfc3339_ms
from domain.errors import SettingsError
from domain.wording.cloudevents_out import default_source
from domain.wording.kinds import KINDS

ProcessingGuarantee = Literal["exactly_once", "at_least_once"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
ClockKind = Literal["wall", "manual"]
EventLoop = Literal["uvloop", "asyncio"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

PACKAGED_PLANS_FILE = Path(__file__).with_name("plans.toml")
PACKAGED_MESSAGES_FILE = Path(__file__).with_name("messages.toml")
PACKAGED_ENDPOINTS_FILE = Path(__file__).with_name("endpoints.toml")

PREFIX = "MOMENTS_"
_T = TypeVar("_T")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9._\[\]:-]+:\d{1,5}$")
# RFC 3986's characters of a URI-reference (percent-encoded where others are needed).
_URI_REFERENCE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]{1,500}$")
_WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{16,}={0,2}$")


def to_ms(seconds: float) -> int:
    """A duration setting in milliseconds, the unit of every time the domain compares it with.

    The one place seconds become milliseconds; rounded, so ``1.005s`` is 1005 ms.
    """
    return round(seconds * 1000)


# --- how each kind of variable reads ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reads:
    """A setting's type metadata: what its variable accepts, and how its text becomes a value.

    ``parse`` raises ``ValueError`` on text it refuses; pydantic then checks the value against
    the field's type (a ``Literal``'s options, say).
    """

    accepted: str
    parse: Callable[[str], object] = str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: Callable[[Any], core_schema.CoreSchema]
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self._parse, handler(source))

    def _parse(self, value: object) -> object:
        return self.parse(value) if isinstance(value, str) else value


def _checked(value: _T, ok: bool) -> _T:
    """``value`` when ``ok``; else the ValueError that makes the setting refused."""
    if not ok:
        raise ValueError(value)
    return value


def _valid_topic(name: str) -> bool:
    # Kafka's own rule: legal characters, at most 249, and not "." or "..".
    return bool(_TOPIC.match(name)) and name not in (".", "..")


def _valid_hostport(text: str) -> bool:
    return bool(_HOSTPORT.match(text)) and 0 < int(text.rpartition(":")[2]) <= 65535


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(text)
    seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    return _checked(seconds, math.isfinite(seconds))


def _brokers(text: str) -> tuple[str, ...]:
    brokers = tuple(b.strip() for b in text.split(",") if b.strip())
    return _checked(brokers, bool(brokers) and all(_valid_hostport(b) for b in brokers))


def _schedule(text: str) -> tuple[float, ...]:
    delays = tuple(_seconds(part) for part in text.split(",") if part.strip())
    ok = bool(delays) and all(0 < d <= 6 * 3600 for d in delays)
    return _checked(delays, ok and len(set(delays)) == len(delays))


def integer(low: int, high: int) -> Reads:
    """An integer from ``low`` to ``high``."""
    return Reads(
        f"an integer from {low} to {high}", lambda t: _checked(int(t), low <= int(t) <= high)
    )


def duration(low: str | None = None, high: str | None = None, accepted: str = "") -> Reads:
    """A duration with a unit (``500ms``, ``2m``; a bare number is seconds), held in seconds."""
    low_s = _seconds(low) if low else 0.0
    high_s = _seconds(high) if high else math.inf
    if not accepted:
        accepted = "a duration" + (f" from {low}" if low else "")
        accepted += (" to " if low else " up to ") + high if high else ""
    return Reads(accepted, lambda t: _checked(_seconds(t), low_s <= _seconds(t) <= high_s))


def number(accepted: str, check: Callable[[Decimal], bool]) -> Reads:
    """An exact decimal number that passes ``check``."""

    def parse(text: str) -> Decimal:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(text) from None
        return _checked(value, value.is_finite() and check(value))

    return Reads(accepted, parse)


def choice(options: Any, fold: Callable[[str], str] = str.lower) -> Reads:
    """One of a ``Literal``'s options, case-folded by ``fold``."""
    names = get_args(options)
    return Reads(f"{', '.join(names[:-1])} or {names[-1]}", fold)


def topic(accepted: str = "a Kafka topic name") -> Reads:
    """A Kafka topic name (or a name made the same way: a prefix, an instance id)."""
    return Reads(accepted, lambda t: _checked(t, _valid_topic(t)))


def file(accepted: str) -> Reads:
    """The path of an existing file."""
    return Reads(accepted, lambda t: _checked(Path(t).expanduser(), Path(t).expanduser().is_file()))


def _token(text: str) -> str:
    # Short tokens are guessable over a network; whitespace would not survive a header.
    return _checked(text, len(text) >= 16 and not any(c.isspace() for c in text))


def webhook_secrets(text: str) -> tuple[str, ...]:
    """The Standard Webhooks secrets (``whsec_<base64>``) of a comma-separated list, in order:
    more than one while a secret is rotated."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def is_webhook_secret(text: str) -> bool:
    """``whsec_`` and the base64 of at least 12 bytes: a Standard Webhooks secret."""
    if not _WEBHOOK_SECRET.match(text):
        return False
    try:
        # Padded as the standardwebhooks library pads it (it accepts unpadded base64).
        base64.b64decode(text.removeprefix("whsec_") + "==")
    except binascii.Error:
        return False
    return True


def _webhook_secrets(text: str) -> str:
    secrets = webhook_secrets(text)
    return _checked(text, bool(secrets) and all(is_webhook_secret(s) for s in secrets))


def setting(default: str | None, doc: str) -> Any:
    """A setting's default, as the text its variable would hold, and what it means."""
    return Field(default, description=doc)


# --- the settings -----------------------------------------------------------------------------


class Settings(BaseModel):
    """The worker's configuration, one field per ``MOMENTS_*`` variable; build it with
    :func:`load_settings`. Secrets are ``SecretStr``: masked in ``repr`` and in logs."""

    model_config = ConfigDict(
        frozen=True,
        validate_default=True,
        extra="forbid",
        alias_generator=lambda name: PREFIX + name.removesuffix("_s").upper(),
    )

    kafka_bootstrap: Annotated[
        tuple[str, ...], Reads("comma-separated host:port list", _brokers)
    ] = setting("localhost:9092", "Kafka brokers")
    app_id: Annotated[str, topic("letters, digits, . _ -")] = setting(
        "usage-moments", "consumer group and prefix of internal topics"
    )
    data_dir: Annotated[Path, Reads("a writable directory", lambda t: Path(t).expanduser())] = (
        setting("./moments-data", "RocksDB state of this worker process (one per process)")
    )
    partitions: Annotated[int, integer(1, 1000)] = setting(
        "8", "partitions of the topics the worker creates"
    )
    replication: Annotated[int, integer(1, 10)] = setting(
        "1", "replication factor of the topics the worker creates"
    )
    standby_replicas: Annotated[int, integer(0, 10)] = setting(
        "1", "warm standby copies of each table partition on other workers"
    )
    web_host: Annotated[str, Reads("a host name or IP address to bind")] = setting(
        "0.0.0.0",  # noqa: S104 - a worker serves its metrics to the network by design
        "HTTP bind address",
    )
    web_port: Annotated[int, integer(1, 65535)] = setting(
        "6066", "HTTP port (/metrics, /healthz, /readyz, /accounts/{id})"
    )
    web_advertised_host: Annotated[str | None, Reads("a host name other workers can reach")] = (
        setting(None, "host in this worker's URL for peers (default: the machine's host name)")
    )
    web_token: Annotated[
        SecretStr | None, Reads("a bearer token of at least 16 characters", _token)
    ] = setting(
        None,
        "when set, /accounts/{id} and /clock require `Authorization: Bearer <token>`; unset, "
        "they answer clients on the worker's own host only (a loopback address; others get 403 "
        "naming this setting), so `make run` needs none (/metrics, /healthz, /readyz and /status "
        "stay open either way; never logged)",
    )
    log_level: Annotated[LogLevel, choice(LogLevel)] = setting("info", "log level")
    log_format: Annotated[LogFormat, choice(LogFormat)] = setting(
        "text",
        "json: one JSON object per line (time, level, logger, message, account_id, partition)",
    )
    processing_guarantee: Annotated[ProcessingGuarantee, choice(ProcessingGuarantee)] = setting(
        "exactly_once", "Kafka transactions (exactly_once) or plain commits"
    )
    event_loop: Annotated[EventLoop, choice(EventLoop)] = setting(
        "uvloop",
        "the worker's event loop: uvloop (less CPU per record, docs/benchmark.md) or asyncio, "
        "the standard library's",
    )
    commit_interval_s: Annotated[float, duration(high="5m")] = setting(
        "1s", "accepted for compatibility; every step commits its own transaction (no commit timer)"
    )
    topic_usage: Annotated[str, topic()] = setting(
        "usage-records", "usage records input; its dead letters go to NAME.dlq"
    )
    topic_accounts: Annotated[str, topic()] = setting(
        "account-plans", "compacted account plans input; dead letters to NAME.dlq"
    )
    topic_prefix: Annotated[str, topic("a Kafka topic name prefix")] = setting(
        "moments",
        "event topics are PREFIX.<kind>: " + ", ".join(f"PREFIX.{kind}" for kind in KINDS),
    )
    cloudevents_source: Annotated[
        str | None, Reads("a URI-reference", lambda t: _checked(t, bool(_URI_REFERENCE.match(t))))
    ] = setting(
        None,
        "`ce_source` of the CloudEvents headers of every event record (default: "
        "`/usage-moments/<MOMENTS_APP_ID>`)",
    )
    plans_file: Annotated[Path, file("a readable TOML file")] = setting(
        str(PACKAGED_PLANS_FILE), "plan catalog"
    )
    messages_file: Annotated[Path, file("a readable TOML file")] = setting(
        str(PACKAGED_MESSAGES_FILE), "message templates"
    )
    dedup_horizon_s: Annotated[float, duration(accepted="a duration such as 12h, 7d")] = setting(
        "7d", "a repeated record_id within this horizon counts once"
    )
    max_clock_skew_s: Annotated[float, duration()] = setting(
        "5m", "records further in the future than this are invalid"
    )
    late_grace_s: Annotated[float, duration()] = setting(
        "1h", "after a period ends plus this, its records are late"
    )
    drop_grace_s: Annotated[float, duration(high="1d")] = setting(
        "15m", "a UTC day is evaluated for drops this long after it closes"
    )
    drop_recent_days: Annotated[int, integer(1, 14)] = setting(
        "3", "complete days compared with the baseline"
    )
    drop_baseline_weeks: Annotated[int, integer(1, 8)] = setting(
        "4", "weeks of same-weekday history forming the baseline"
    )
    drop_min_expected: Annotated[Decimal, number("a number >= 0", lambda d: d >= 0)] = setting(
        "100", "expected volume below which no drop is reported"
    )
    drop_fraction: Annotated[
        Decimal, number("a number strictly between 0 and 1", lambda d: 0 < d < 1)
    ] = setting("0.7", "recent <= (1 - fraction) * expected is a drop")
    underuse_level: Annotated[
        Decimal | None, number("a number strictly between 0 and 1", lambda d: 0 < d < 1)
    ] = setting(
        None,
        "a billing-anniversary suggests a downgrade when every limited metric stayed at or "
        "below this share of its limit in the closed period and the one before (contract 3.5; "
        "default: the catalog's `underuse_level`, 0.3 in the shipped one)",
    )
    daily_retention_days: Annotated[int, integer(35, 400)] = setting(
        "35", "days of daily totals kept"
    )
    batch_size: Annotated[int, integer(1, 100_000)] = setting(
        "10000", "most records one fetch hands to the engine (one step per partition of them)"
    )
    evaluation_check_s: Annotated[float, duration("100ms", "5m")] = setting(
        "5s",
        "how often a worker checks whether a closed day awaits drop evaluation, or an "
        "anniversary or birthday is due (they come within this of being due, once caught up)",
    )
    session_timeout_s: Annotated[float, duration("6s", "5m")] = setting(
        "10s", "how long the group waits for a silent worker before moving its partitions"
    )
    instance_id: Annotated[
        str | None, topic("letters, digits, . _ - (unique per worker, stable across restarts)")
    ] = setting(
        None,
        "static group membership: a restart within the session timeout keeps the worker's "
        "partitions without a rebalance (e.g. a StatefulSet pod name)",
    )
    shutdown_timeout_s: Annotated[float, duration("1s", "10m")] = setting(
        "30s", "on SIGTERM, the worker commits what it finished and exits within this"
    )
    clock: Annotated[
        ClockKind, Reads("wall, manual or manual:<RFC 3339 instant>", lambda t: t.partition(":")[0])
    ] = setting(
        "wall",
        "manual: time starts now (or at the instant given) and moves only by POST /clock; "
        "for tests",
    )
    # Not a variable of its own: the instant after `manual:` in MOMENTS_CLOCK.
    clock_start_ms: int | None = None
    rocksdb_cache_mb: Annotated[int, integer(8, 65536)] = setting(
        "256", "total RocksDB block cache of this worker, shared out over its table partitions"
    )
    rocksdb_write_buffer_mb: Annotated[int, integer(1, 512)] = setting(
        "4", "RocksDB memtable size per table partition"
    )
    state_cleanup_delay_s: Annotated[float, duration(high="7d")] = setting(
        "10m",
        "the local store of a partition this worker holds neither as active nor as standby "
        "is deleted this long after it was let go (or after start, for stores found on disk)",
    )
    state_stale_after_s: Annotated[
        float,
        duration(
            "1m",
            "30d",
            "a duration from 1m to 30d, below the changelog topics' delete.retention.ms "
            "(Kafka's default: 1d)",
        ),
    ] = setting(
        "12h",
        "a local store last in sync with its changelogs longer ago than this is wiped and "
        "restored from the beginning instead of resumed: compaction may have removed "
        "deletions it has not read",
    )
    endpoints_file: Annotated[Path, file("a readable TOML file")] = setting(
        str(PACKAGED_ENDPOINTS_FILE),
        "webhook endpoints of `moments deliver` (URL, kinds, plan or account filter, secret)",
    )
    deliver_schedule_s: Annotated[
        tuple[float, ...],
        Reads("comma-separated distinct durations above 0 and at most 6h", _schedule),
    ] = setting(
        "5s,1m,10m,1h,6h",
        "`moments deliver`: the delay of each retry tier (a topic per endpoint and delay); "
        "after the last, a delivery is dead-lettered",
    )
    deliver_concurrency: Annotated[int, integer(1, 1000)] = setting(
        "16", "`moments deliver`: requests in flight per endpoint (one account's in order)"
    )
    deliver_batch_size: Annotated[int, integer(1, 10_000)] = setting(
        "200", "`moments deliver`: most records one fetch hands to an endpoint's deliveries"
    )
    deliver_web_port: Annotated[int, integer(1, 65535)] = setting(
        "6067", "`moments deliver`: HTTP port (/metrics, /healthz) on MOMENTS_WEB_HOST"
    )
    security_protocol: Annotated[SecurityProtocol, choice(SecurityProtocol, str.upper)] = setting(
        "PLAINTEXT", "Kafka security protocol"
    )
    sasl_mechanism: Annotated[SaslMechanism, choice(SaslMechanism, str.upper)] = setting(
        "PLAIN", "SASL mechanism"
    )
    sasl_username: Annotated[str | None, Reads("a user name")] = setting(None, "SASL user")
    sasl_password: Annotated[SecretStr | None, Reads("a password")] = setting(
        None, "SASL password (never logged)"
    )
    ssl_cafile: Annotated[Path | None, file("a readable PEM file")] = setting(
        None, "CA bundle for SSL"
    )
    ssl_certfile: Annotated[Path | None, file("a readable PEM file")] = setting(
        None, "client certificate for SSL"
    )
    ssl_keyfile: Annotated[Path | None, file("a readable PEM file")] = setting(
        None, "client key for SSL"
    )

    receiver_secret: Annotated[
        SecretStr | None,
        Reads("whsec_<base64> secrets, comma-separated", _webhook_secrets),
    ] = setting(
        None,
        "`moments receive`: the Standard Webhooks secrets a webhook may be signed with (two "
        "while one is rotated; never logged)",
    )

    @model_validator(mode="before")
    @classmethod
    def _clock_start(cls, raw: Any) -> Any:
        """Split ``manual:<instant>`` into the clock kind and its start."""
        name = PREFIX + "CLOCK"
        text = raw.get(name) if isinstance(raw, dict) else None
        if not isinstance(text, str) or ":" not in text:
            return raw
        kind, _, start = text.partition(":")
        try:
            if kind != "manual":
                raise ValueError(kind)
            return {**raw, PREFIX + "CLOCK_START_MS": parse_rfc3339_ms(start)}
        except ValueError:
            raise SettingsError(name, text, VARIABLES_BY_NAME[name].accepted) from None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Checks across variables: SASL credentials, and retention covering drop detection."""
        protocol = self.security_protocol
        if protocol.startswith("SASL") and (
            self.sasl_username is None or self.sasl_password is None
        ):
            missing = "SASL_USERNAME" if self.sasl_username is None else "SASL_PASSWORD"
            raise SettingsError(
                PREFIX + missing, "", f"a value when {PREFIX}SECURITY_PROTOCOL={protocol}"
            )
        needed = self.drop_recent_days + 7 * self.drop_baseline_weeks
        if self.daily_retention_days < needed:
            raise SettingsError(
                PREFIX + "DAILY_RETENTION_DAYS",
                str(self.daily_retention_days),
                f"at least {PREFIX}DROP_RECENT_DAYS + 7 * {PREFIX}DROP_BASELINE_WEEKS = {needed}",
            )
        return self

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

    @property
    def topic_deliver_dlq(self) -> str:
        """Dead-letter topic of webhook deliveries (every endpoint's)."""
        return f"{self.topic_prefix}.deliver.dlq"

    @property
    def topic_deliver_replayed(self) -> str:
        """Positions of the delivery dead letters ``moments deliver --replay`` put back."""
        return f"{self.topic_prefix}.deliver.replayed"

    def deliver_retry_topic(self, endpoint: str, tier: str) -> str:
        """Retry tier ``tier`` (``5s``, ``1m``) of one endpoint's deliveries."""
        return f"{self.topic_prefix}.deliver.{endpoint}.retry.{tier}"

    def deliver_group(self, endpoint: str) -> str:
        """Consumer group of one endpoint's deliveries."""
        return f"{self.app_id}-deliver-{endpoint}"

    @property
    def event_source(self) -> str:
        """``ce_source`` of the events: ``MOMENTS_CLOUDEVENTS_SOURCE``, or the app's default."""
        return self.cloudevents_source or default_source(self.app_id)

    def event_topic(self, kind: str) -> str:
        """Topic of one event kind, e.g. ``moments.threshold-hit``."""
        return f"{self.topic_prefix}.{kind}"

    def summary(self) -> dict[str, str]:
        """Every setting as text for logs and ``check-config``; secrets masked."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "***"
            elif isinstance(value, tuple):
                out[name] = ",".join(f"{v:g}s" if isinstance(v, float) else str(v) for v in value)
            else:
                out[name] = "(unset)" if value is None else str(value)
        return out


# --- the variables, read from the declaration -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its name, default (as text), what it accepts, what it means."""

    name: str
    field: str
    default: str | None
    accepted: str
    doc: str
    secret: bool = False


def _variables() -> tuple[Variable, ...]:
    found: list[Variable] = []
    for name, info in Settings.model_fields.items():
        reads = next((m for m in info.metadata if isinstance(m, Reads)), None)
        if reads is None:  # derived from another variable (clock_start_ms)
            continue
        found.append(
            Variable(
                name=str(info.alias),
                field=name,
                default=info.default,
                accepted=reads.accepted,
                doc=info.description or "",
                secret="SecretStr" in str(info.annotation),
            )
        )
    return tuple(found)


#: Every variable the worker reads, in the order the README documents them.
VARIABLES: tuple[Variable, ...] = _variables()
VARIABLES_BY_NAME: Mapping[str, Variable] = {v.name: v for v in VARIABLES}
_BY_FIELD = {v.field: v for v in VARIABLES}


def _first_error(exc: ValidationError, raw: Mapping[str, str]) -> SettingsError:
    """The first refused variable of a validation, as today's one-line message."""
    where = exc.errors()[0]["loc"][0]
    var = VARIABLES_BY_NAME.get(str(where)) or _BY_FIELD[str(where)]
    shown = "***" if var.secret else raw.get(var.name, var.default or "")
    return SettingsError(var.name, shown, var.accepted)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Parse ``MOMENTS_*`` variables from ``env`` (usually ``os.environ``).

    A blank value means the default; values are stripped.

    Raises:
        SettingsError: the first variable with a value that is not accepted.
    """
    raw = {v.name: text.strip() for v in VARIABLES if (text := env.get(v.name)) and text.strip()}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc, raw) from None


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """``MOMENTS_*`` names in ``env`` that no setting reads (likely typos)."""
    return sorted(k for k in env if k.startswith(PREFIX) and k not in VARIABLES_BY_NAME)


def log_options(env: Mapping[str, str]) -> tuple[LogLevel, LogFormat]:
    """Log level and format for setting up logging before the settings are checked.

    A bad value gives the default here: :func:`load_settings` then refuses it, and that
    message is logged with the defaults.
    """
    out: list[str] = []
    for field, options in (("log_level", get_args(LogLevel)), ("log_format", get_args(LogFormat))):
        var = _BY_FIELD[field]
        text = (env.get(var.name) or "").strip().lower()
        out.append(text if text in options else str(var.default))
    return out[0], out[1]  # type: ignore[return-value]  # checked against the Literals' args
