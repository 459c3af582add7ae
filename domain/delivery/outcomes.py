"""What an attempt's answer means for the delivery: acknowledged, tried again, or dead.

- a 2xx acknowledges;
- no answer (a timeout, a refused or reset connection), 408, 429 and every 5xx are tried again,
  on the schedule of :mod:`domain.delivery.schedule`;
- any other status is dead at once, the dead-letter topic keeping the status and an excerpt of
  the body: a 4xx says the receiver will not take this event as it is (410 Gone: the endpoint
  is retired), and a 1xx or 3xx is not an answer a webhook receiver gives (redirects are not
  followed: the signed request would go to a URL nobody configured).
"""

from __future__ import annotations

from typing import Final, Literal

Verdict = Literal["ack", "retry", "dead"]

RETRIED_STATUSES: Final = frozenset({408, 429})


def classify(status: int | None) -> Verdict:
    """The verdict on an attempt that got ``status`` (None: no answer at all)."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "ack"
    if status in RETRIED_STATUSES or 500 <= status < 600:
        return "retry"
    return "dead"
