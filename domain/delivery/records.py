"""What ``moments deliver`` reads from an event and writes to Kafka about a delivery.

- :func:`event_facts`: the few fields of an event's JSON that route and sign it.
- A **retry record**, on an endpoint's tier topic: the event's key and value exactly as on the
  event topic (the value is the signed body), and the delivery's state in headers
  (:class:`RetryState`), so a tier record can be read with any Kafka tool.
- A **dead letter**, on ``<prefix>.deliver.dlq``, keyed by account: a JSON object
  (:class:`DeadLetter`) with the endpoint, the event (its value as text), the attempts, the last
  status, an excerpt of the last answer's body (at most :data:`EXCERPT_MAX_BYTES`), the error,
  and the first and last attempt times. ``moments deliver --replay`` reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypedDict

import orjson

from domain.common.timeutil import to_rfc3339

EXCERPT_MAX_BYTES: Final = 1024
#: What an HTTP field value cannot hold (RFC 9110 5.5): control characters other than HTAB.
_NOT_IN_A_HEADER: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: Header names of a retry record's state (values: ASCII text).
H_ATTEMPTS: Final = "moments-attempts"
H_DUE: Final = "moments-due-ms"
H_FIRST: Final = "moments-first-attempt-ms"
H_STATUS: Final = "moments-last-status"
H_ERROR: Final = "moments-last-error"

Reason = Literal["rejected", "exhausted", "invalid"]


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What delivery needs of an event: its id (``webhook-id``), kind, account, plan and
    emission time (latency is measured from it)."""

    event_id: str
    kind: str
    account_id: str
    plan_id: str | None
    emitted_at: str | None


def event_facts(value: bytes) -> EventFacts:
    """The routing facts of an event's JSON value.

    Raises:
        ValueError: not a JSON object with string ``event_id``, ``kind`` and ``account_id``,
            or an ``event_id`` that cannot be sent as ``webhook-id`` (a control character).
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    facts: list[str] = []
    for key in ("event_id", "kind", "account_id"):
        found = data.get(key)
        if not isinstance(found, str) or not found:
            raise ValueError(f"{key}: missing or not a string")
        facts.append(found)
    if _NOT_IN_A_HEADER.search(facts[0]):
        # It is sent as webhook-id: a control character (RFC 9110 field values allow none but
        # HTAB) would make every attempt fail before it leaves.
        raise ValueError("event_id: holds a control character")
    plan = data.get("plan")
    plan_id = plan.get("id") if isinstance(plan, dict) else None
    emitted = data.get("emitted_at")
    return EventFacts(
        event_id=facts[0],
        kind=facts[1],
        account_id=facts[2],
        plan_id=plan_id if isinstance(plan_id, str) else None,
        emitted_at=emitted if isinstance(emitted, str) else None,
    )


@dataclass(frozen=True, slots=True)
class RetryState:
    """A delivery between attempts: how many were made, when the next is due, since when it
    is tried, and what the last one got."""

    attempts: int
    due_ms: int
    first_attempt_ms: int
    last_status: int | None = None
    last_error: str = ""

    def headers(self) -> list[tuple[str, bytes]]:
        """The state as Kafka headers."""
        out = [
            (H_ATTEMPTS, str(self.attempts).encode()),
            (H_DUE, str(self.due_ms).encode()),
            (H_FIRST, str(self.first_attempt_ms).encode()),
        ]
        if self.last_status is not None:
            out.append((H_STATUS, str(self.last_status).encode()))
        if self.last_error:
            out.append((H_ERROR, self.last_error.encode("utf-8", "replace")[:200]))
        return out


def retry_state(headers: Iterable[tuple[str, bytes]]) -> RetryState:
    """The state in a retry record's headers.

    Raises:
        ValueError: a header is missing or not a number.
    """
    found = {k: v for k, v in headers}
    try:
        status = found.get(H_STATUS)
        return RetryState(
            attempts=int(found[H_ATTEMPTS]),
            due_ms=int(found[H_DUE]),
            first_attempt_ms=int(found[H_FIRST]),
            last_status=int(status) if status is not None else None,
            last_error=found.get(H_ERROR, b"").decode("utf-8", "replace"),
        )
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a retry record's headers: {exc!r}") from None


def excerpt(body: bytes) -> str:
    """At most :data:`EXCERPT_MAX_BYTES` of ``body`` as text (UTF-8; bytes that are not, and a
    character cut at the end, are left out)."""
    return body[:EXCERPT_MAX_BYTES].decode("utf-8", "ignore")


class DeadLetter(TypedDict):
    """The JSON value of a dead letter."""

    endpoint: str
    event_id: str | None
    kind: str | None
    account_id: str | None
    #: The event's value as on the event topic (the signed body), as text.
    event: str
    reason: Reason
    attempts: int
    last_status: int | None
    body_excerpt: str
    error: str
    first_attempt_at: str | None
    last_attempt_at: str | None


def dead_letter(
    *,
    endpoint: str,
    value: bytes,
    facts: EventFacts | None,
    reason: Reason,
    attempts: int,
    last_status: int | None,
    body: bytes,
    error: str,
    first_attempt_ms: int | None,
    last_attempt_ms: int | None,
) -> bytes:
    """A dead letter's JSON value."""
    letter: DeadLetter = {
        "endpoint": endpoint,
        "event_id": facts.event_id if facts else None,
        "kind": facts.kind if facts else None,
        "account_id": facts.account_id if facts else None,
        "event": value.decode("utf-8", "replace"),
        "reason": reason,
        "attempts": attempts,
        "last_status": last_status,
        "body_excerpt": excerpt(body),
        "error": error[:2000],
        "first_attempt_at": _instant(first_attempt_ms),
        "last_attempt_at": _instant(last_attempt_ms),
    }
    return orjson.dumps(letter)


def _instant(ms: int | None) -> str | None:
    return None if ms is None else to_rfc3339(ms)


def parse_dead_letter(value: bytes) -> DeadLetter:
    """A dead letter read back (by ``--replay``).

    Raises:
        ValueError: not a dead letter of ``moments deliver``.
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("endpoint", "event")
    ):
        raise ValueError("not a dead letter: endpoint and event must be strings")
    letter: DeadLetter = data  # type: ignore[assignment]  # the fields replay reads are checked
    return letter


#: A dead letter's place in the dead-letter topic, ``"<partition>:<offset>"``: what a replay
#: marks as replayed.
Position = str


def replay_selected(
    letters: Sequence[tuple[Position, DeadLetter]],
    endpoint: str | None,
    event_id: str | None,
    replayed: Collection[Position] = frozenset(),
) -> list[tuple[Position, DeadLetter]]:
    """The dead letters to replay: those of ``endpoint`` and ``event_id`` when given, each
    (endpoint, event) once, the last one written winning (a delivery replayed and dead again is
    in the topic twice). Without ``event_id``, a last letter already replayed (its position in
    ``replayed``) is left: a second ``--replay`` does not send again what the first did, unless
    it died again. An ``event_id`` asks for its event whatever was replayed before."""
    chosen: dict[tuple[str, str | None, str], tuple[Position, DeadLetter]] = {}
    for position, letter in letters:
        if endpoint is not None and letter["endpoint"] != endpoint:
            continue
        if event_id is not None and letter.get("event_id") != event_id:
            continue
        # Invalid events have no id: their text tells them apart.
        key = (letter["endpoint"], letter.get("event_id"), letter["event"])
        chosen.pop(key, None)
        chosen[key] = (position, letter)
    if event_id is not None:
        return list(chosen.values())
    return [pair for pair in chosen.values() if pair[0] not in replayed]
