"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme").

A request carries ``webhook-id`` (the event's ``event_id``, the receiver's deduplication key),
``webhook-timestamp`` (unix seconds of the attempt: each retry is signed anew, so a receiver's
replay window holds) and ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}`` under the secret's bytes. While a secret is rotated, the request
carries one signature per secret, space-separated, as the specification allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix of every secret, not one
#: The specification's bounds of a secret's length, in bytes (after base64).
SECRET_MIN_BYTES: Final = 24
SECRET_MAX_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class Secret:
    """A signing key's bytes; never shown (``repr`` and ``str`` say ``Secret(***)``)."""

    key: bytes

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def parse_secret(text: str) -> Secret:
    """The key of a ``whsec_<base64>`` secret.

    Raises:
        ValueError: without the prefix, not base64, or not 24 to 64 bytes long; the message
            never holds the secret.
    """
    if not text.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r} (then base64)")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError(f"is not {SECRET_PREFIX} followed by standard base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise ValueError(
            f"must hold {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes after base64 "
            f"(it holds {len(key)})"
        )
    return Secret(key)


def signature(secret: Secret, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp_s}.{body}">``."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret.key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(
    msg_id: str, timestamp_s: int, body: bytes, secrets: Sequence[Secret]
) -> dict[str, str]:
    """The headers of one attempt: id, timestamp, one signature per secret (current first),
    and the content type of an event's JSON."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp_s, body) for s in secrets),
        "content-type": "application/json",
    }
