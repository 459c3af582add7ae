"""``moments receive``'s pure part: verify a webhook, word its line, count.

A webhook is verified as any receiver of ours would, with the ``standardwebhooks`` library:
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` must be there, the timestamp
within the library's tolerance (five minutes either way) and one of the ``v1,`` signatures
the HMAC-SHA256 of ``{id}.{timestamp}.{body}`` under one of the secrets (two while a secret
is rotated). Receivers deduplicate by ``webhook-id`` (the event's ``event_id``): a verified
webhook whose id was seen before is counted as a repeat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from standardwebhooks import Webhook, WebhookVerificationError

from domain.wording.rendering import MISSING, text_of

_TITLE_MAX_CHARS = 200


class Verifier:
    """Verifies webhooks against one or more ``whsec_`` secrets; never shows them."""

    __slots__ = ("_webhooks",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret is needed")
        self._webhooks = tuple(Webhook(secret) for secret in secrets)

    def __len__(self) -> int:
        return len(self._webhooks)

    def __repr__(self) -> str:
        return f"Verifier(<{len(self)} secrets>)"

    def refusal(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """Why the webhook is refused (the library's reason), or None when one secret
        verifies it."""
        plain = {name.lower(): value for name, value in headers.items()}
        reason = ""
        for webhook in self._webhooks:
            try:
                webhook.verify(body, plain, json_parse=False)
            except WebhookVerificationError as exc:
                reason = reason or str(exc)
                continue
            return None
        return reason


@dataclass(slots=True)
class Counts:
    """What the receiver saw: verified webhooks (repeats among them) and refusals."""

    received: int = 0
    repeats: int = 0
    refused: int = 0
    seen: set[str] = field(default_factory=set, repr=False)

    def verified(self, webhook_id: str) -> bool:
        """Count a verified webhook; True when its id was seen before (a repeat)."""
        self.received += 1
        repeat = webhook_id in self.seen
        self.seen.add(webhook_id)
        self.repeats += repeat
        return repeat

    def as_json(self) -> dict[str, int]:
        """The counts as ``GET /counts`` answers them."""
        return {"received": self.received, "repeats": self.repeats, "refused": self.refused}


def event_of(body: bytes) -> Mapping[str, Any]:
    """The event a body carries; empty when it is not a JSON object (its line shows ``-``)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def received_line(webhook_id: str, body: bytes, *, repeat: bool = False) -> str:
    """One line for a verified webhook: its id, the event's kind and account, the message
    title (``-`` for what is missing); ``(repeat)`` when the id was seen before."""
    event = event_of(body)
    message = event.get("message")
    title = message.get("title") if isinstance(message, Mapping) else None
    parts = [
        text_of(webhook_id, 80),
        text_of(event.get("kind")),
        text_of(event.get("account_id")),
        text_of(title, _TITLE_MAX_CHARS) if title is not None else MISSING,
    ]
    return "  ".join(parts) + ("  (repeat)" if repeat else "")
