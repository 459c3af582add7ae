"""Logging of every ``moments`` command: text or JSON lines, with Faust's noise demoted.

``MOMENTS_LOG_FORMAT=json`` writes one JSON object per line (``time`` in RFC 3339 UTC
with milliseconds, ``level``, ``logger``, ``message``, and ``account_id`` /
``partition`` when a log call passes them with ``extra=``; a traceback is one string
field, ``exc_info``), so a log pipeline needs no multi-line parsing.

Faust configures logging itself when its worker starts (mode's ``setup_logging``
clears the root handlers and installs its own); :class:`app.faust_internals.Worker`
calls :func:`configure` again right after that, so these handlers are the ones that
stay. Records that tell an operator nothing (:data:`NOISE`) are demoted to debug, each
rule with its reason.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TextIO

from aiokafka.errors import KafkaError

LogFormat = Literal["text", "json"]

#: Fields a log call may pass with ``extra=`` that the JSON lines carry.
CONTEXT_FIELDS: Final = ("account_id", "partition")

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class Noise:
    """Records of loggers under ``logger`` (``""``: any) at ``level`` whose message matches
    ``pattern`` (and, when ``exc_types`` is given, whose exception is one of them)."""

    logger: str
    level: int
    pattern: re.Pattern[str]
    reason: str
    exc_types: tuple[type[BaseException], ...] = ()

    def matches(self, record: logging.LogRecord, message: str) -> bool:
        """Whether ``record`` (whose formatted message is ``message``) is this noise."""
        name = record.name
        return (
            record.levelno == self.level
            and (not self.logger or name == self.logger or name.startswith(self.logger + "."))
            and self.pattern.search(message) is not None
            and (not self.exc_types or _exception_is(record, self.exc_types))
        )


def _exception_is(record: logging.LogRecord, types: tuple[type[BaseException], ...]) -> bool:
    exc_info = record.exc_info
    return bool(exc_info) and isinstance(exc_info[1], types)  # type: ignore[index]


#: aiokafka's line for a produce answered with a retriable error, which it retries.
_PRODUCE_RETRY: Final = re.compile(r"^Got error produce response on topic-partition .*, retrying")


#: What is demoted to debug, and why.
NOISE: Final[tuple[Noise, ...]] = (
    Noise(
        "",
        logging.INFO,
        re.compile(r"^\[\^-*[^\]]*\]: "),
        # Faust's ~20 internal services (mode services; ours in app.faust_internals among
        # them) each log starting, stopping and their steps ("[^--Producer]: Starting...");
        # the engine logs the worker's own milestones (partitions ready, engine stopped),
        # and crashes come at error level, which is kept.
        "Faust service lifecycle",
    ),
    Noise(
        "",
        logging.WARNING,
        re.compile(r"^\[\^-*[^\]]*\]: Missing sensor state for rebalance"),
        # Faust's monitor lost its own timing of a rebalance (it misses the first one of
        # every start); nothing about the worker's work.
        "Faust sensor bookkeeping",
    ),
    Noise(
        "aiokafka.consumer",
        logging.INFO,
        re.compile(
            r"^(Updating subscribed topics|Subscribed to topic|Revoking previously assigned"
            r"|\(Re-\)joining group|Joined group|Elected group leader|Successfully synced group"
            r"|Setting newly assigned partitions|Discovered coordinator)"
        ),
        # Every rebalance logs eight of these (with the whole topic list); the engine logs
        # each assignment in one line and moments_rebalances_total counts them.
        "per-rebalance consumer-group chatter",
    ),
    Noise(
        "aiokafka.consumer.group_coordinator",
        logging.WARNING,
        re.compile(r"^Heartbeat failed for group \S+ because it is rebalancing"),
        # How every member learns of a rebalance, not a fault; failures of another
        # kind stay warnings.
        "a rebalance announced through the heartbeat",
    ),
    Noise(
        "aiokafka.producer",
        logging.INFO,
        re.compile(r"^Discovered coordinator"),
        # One per transactional producer (one per partition) at each takeover.
        "transaction coordinator lookups",
    ),
    Noise(
        "aiokafka.consumer.group_coordinator",
        logging.ERROR,
        re.compile(r"GroupCoordinatorNotAvailableError"),
        # Logged at every start while the broker loads its offsets topic, and retried by
        # aiokafka until it succeeds; a broker that stays away shows on /readyz
        # (broker_connected) and in the worker-down alerts, not in this line.
        "coordinator still loading, retried",
    ),
    Noise(
        "faust.app.base",
        logging.INFO,
        re.compile(r"^Executing _on_partitions_assigned"),
        "Faust's rebalance callback trace",
    ),
    Noise(
        "faust.tables.recovery",
        logging.INFO,
        re.compile(r"^generation id \d+ app consumers id"),
        # Faust's table recovery runs with no Faust tables: our engine restores its own.
        "Faust's (empty) table recovery",
    ),
    Noise(
        "faust.transport.producer",
        logging.WARNING,
        re.compile(r"^producer buffer full"),
        # Faust's producer buffer carries only Faust's own sends (none on the data path:
        # the engine has its own transactional producers) and drains itself.
        "Faust's producer buffer back-pressure",
    ),
    Noise(
        "aiokafka.producer.sender",
        logging.WARNING,
        _PRODUCE_RETRY,
        # A produce answered with a retriable error, retried by aiokafka: nothing to do.
        # Almost all are NotEnoughReplicasError from the broker's transaction verification
        # (KIP-890): a Kafka 3.6+ broker checks a transaction's first write to a partition
        # with the transaction coordinator; when the step's offset commit is being
        # verified for the same transactional id at that moment, the broker fails the
        # earlier check (NETWORK_EXCEPTION) and answers clients older than produce v12
        # NOT_ENOUGH_REPLICAS (aiokafka 0.14 speaks v7), whatever min.insync.replicas is.
        # moments_kafka_retries_total{error} counts them (KafkaRetryCounter); a
        # produce that keeps failing fails its step, which the engine reports.
        "produce retried by aiokafka",
    ),
    Noise(
        "asyncio",
        logging.ERROR,
        re.compile(r"^(Future|Task) exception was never retrieved"),
        # When a transactional producer's sender dies (fenced), aiokafka fails every
        # future it holds, its internal ones included (the transaction's waiter, each
        # batch's drain waiter), which nobody awaits; the collector then reports each.
        # The engine reports the fence itself, once. Other exceptions stay errors.
        "aiokafka's futures of a dead producer",
        exc_types=(KafkaError,),
    ),
)


#: Seconds in which only the first of a :data:`THROTTLED` line shows.
THROTTLE_WINDOW_S: Final = 60.0

#: aiokafka's lines repeated several times a second while a broker is away (logger,
#: message template). The worker's /readyz (broker_connected) and the worker-down alerts
#: say the broker is away; one line a minute of each says it in the log.
THROTTLED: Final[tuple[tuple[str, str], ...]] = (
    ("aiokafka", "Unable connect to node with id %s: %s"),
    ("aiokafka", 'Unable connect to "%s:%s": %s'),
    ("aiokafka", "Unable to update metadata from %s"),
    ("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s"),
    ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"),
)


class RepeatThrottle(logging.Filter):
    """Shows the first of each :data:`THROTTLED` line per window; demotes the repeats.

    The next line shown says how many were demoted to debug meanwhile.
    """

    def __init__(
        self,
        threshold: int,
        rules: tuple[tuple[str, str], ...] = THROTTLED,
        window_s: float = THROTTLE_WINDOW_S,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.rules = frozenset(rules)
        self.window_s = window_s
        self._shown_at: dict[tuple[str, str], float] = {}
        self._held_back: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` unless it repeats a throttled line within the window."""
        key = (record.name, record.msg if isinstance(record.msg, str) else "")
        if record.levelno <= logging.DEBUG or key not in self.rules:
            return True
        shown = self._shown_at.get(key)
        if shown is not None and record.created - shown < self.window_s:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            record.levelno = logging.DEBUG
            record.levelname = "DEBUG"
            return logging.DEBUG >= self.threshold
        self._shown_at[key] = record.created
        held = self._held_back.pop(key, 0)
        if held and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (and %d more like it in the last %ds, at debug level)"
            record.args = (*record.args, held, int(self.window_s))
        return True


class NoiseFilter(logging.Filter):
    """Demotes :data:`NOISE` records to debug; drops them below ``threshold``."""

    def __init__(self, threshold: int, rules: tuple[Noise, ...] = NOISE) -> None:
        super().__init__()
        self.threshold = threshold
        self.rules = rules

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep ``record`` unless it is noise below the threshold."""
        if record.levelno <= logging.DEBUG:
            return record.levelno >= self.threshold
        message = record.getMessage()
        for rule in self.rules:
            if rule.matches(record, message):
                record.levelno = logging.DEBUG
                record.levelname = "DEBUG"
                return logging.DEBUG >= self.threshold
        return True


#: The logger aiokafka's producers log their sends' failures to.
AIOKAFKA_SENDER_LOGGER: Final = "aiokafka.producer.sender"


class KafkaRetryCounter(logging.Filter):
    """Counts aiokafka's retried produce errors by error (``count(error_name)``).

    A filter on aiokafka's sender logger, so it sees the record before any handler (and
    whatever the handlers' level); :data:`NOISE` demotes the same records to debug.
    """

    def __init__(self, count: Callable[[str], None]) -> None:
        super().__init__()
        self.count = count

    def filter(self, record: logging.LogRecord) -> bool:
        """Count ``record`` when it is a retried produce; always keep it."""
        if record.levelno >= logging.WARNING and isinstance(record.msg, str):
            if _PRODUCE_RETRY.search(record.msg) and isinstance(record.args, tuple):
                error = record.args[-1] if record.args else None
                # aiokafka passes the error class (produce v7 and older carry no message).
                self.count(error.__name__ if isinstance(error, type) else "other")
        return True


def install_kafka_retry_counter(count: Callable[[str], None]) -> None:
    """Count aiokafka's retried produce errors with ``count`` (once per process)."""
    sender = logging.getLogger(AIOKAFKA_SENDER_LOGGER)
    for old in [f for f in sender.filters if isinstance(f, KafkaRetryCounter)]:
        sender.removeFilter(old)
    sender.addFilter(KafkaRetryCounter(count))
    # Counted even when the log shows errors only: the record must be made to be seen.
    if sender.getEffectiveLevel() > logging.WARNING:
        sender.setLevel(logging.WARNING)


class PartitionContext(logging.Filter):
    """Sets ``partition`` on our records whose message starts ``"partition %d:"``.

    The engine's and the agents' messages about one partition all start that way, with
    the partition as the first argument; this reads it from the call's template and
    arguments (not from the rendered text), so those calls need no ``extra=``. A
    ``partition`` given with ``extra=`` wins.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; add its partition when the template names one."""
        if "partition" in record.__dict__:
            return True
        msg, args = record.msg, record.args
        if (
            isinstance(msg, str)
            and msg.startswith("partition %d")
            and isinstance(args, tuple)
            and args
            and isinstance(args[0], int)
        ):
            record.partition = args[0]
        return True


def _utc_ms(created: float) -> str:
    seconds = int(created)
    ms = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object (never more than one line)."""
        out: dict[str, object] = {
            "time": _utc_ms(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an extra= value of any type still gives a line, not a crash.
        return json.dumps(out, ensure_ascii=False, default=str)


def text_formatter() -> logging.Formatter:
    """The formatter of ``MOMENTS_LOG_FORMAT=text``."""
    return logging.Formatter(TEXT_FORMAT)


def level_number(level: str) -> int:
    """``info`` -> ``logging.INFO``; an unknown name gives INFO (settings check names)."""
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def configure(level: str, fmt: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """Make one handler of ``fmt`` at ``level`` the root logger's only handler.

    Call it again after anything else (Faust's worker) configured logging.
    """
    threshold = level_number(level)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setLevel(threshold)
    handler.setFormatter(JsonFormatter() if fmt == "json" else text_formatter())
    handler.addFilter(NoiseFilter(threshold))
    handler.addFilter(RepeatThrottle(threshold))
    handler.addFilter(PartitionContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    return handler
