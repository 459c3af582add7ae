"""One processing step of one partition: what handlers see and fill in.

A handler reads state through :attr:`Step.state`, decides, writes state back to
it, and queues messages with :meth:`Step.send`. It never awaits: a step's whole
decision is made before its Kafka transaction starts, so nothing can interleave
between a read and the write that depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from state.transaction import StepState

#: A message's Kafka headers: (name, value) pairs, in order.
Headers = tuple[tuple[str, bytes], ...]
#: ``(key, value)``, or ``(key, value, headers)`` for messages with headers (an event and its
#: CloudEvents headers; a forwarded binary-mode CloudEvent keeps its ``ce_*`` ones): state
#: changes, the common message, stay pairs.
Message = tuple[bytes | None, bytes] | tuple[bytes | None, bytes, Headers]
#: (topic, partition) -> [message]
Messages = dict[tuple[str, int], list[Message]]


@dataclass(slots=True)
class Step:
    """A unit of work on ``partition``: one Kafka transaction, one RocksDB write batch."""

    partition: int
    state: StepState
    now_ms: int
    messages: Messages = field(default_factory=dict)
    #: Run once the step's transaction committed and its state is applied (metrics).
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    sent: int = 0

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Queue a message, with ``headers`` if any; by default to this step's partition of
        ``topic``."""
        target = self.partition if partition is None else partition
        message: Message = (key, value, tuple(headers)) if headers else (key, value)
        self.messages.setdefault((topic, target), []).append(message)
        self.sent += 1

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after the step is committed (never when it fails)."""
        self.after_commit.append(callback)


class Handler(Protocol):
    """Turns one topic's records of a step into state writes and messages."""

    def process(self, step: Step, topic: str, records: Sequence[Any]) -> None:
        """Decide for ``records`` (all of one topic, of ``step.partition``, in order)."""

    def reject(self, step: Step, topic: str, record: Any, reason: str) -> None:
        """Give up on ``record``, which cannot be processed: dead-letter it and count it."""
