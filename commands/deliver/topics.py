"""The deliverer's topics: each endpoint's retry tiers and the delivery dead-letter topic
(created when missing, like the worker creates its own), and the event topics it reads
(created when missing too, with the worker's partition count, so a deliverer started before
any worker does not wait for them)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from app.topology import TopicSpec, create_missing, started_admin, wait_visible
from config.settings import Settings
from domain.delivery.endpoints import Endpoint
from domain.delivery.schedule import RetrySchedule

logger = logging.getLogger(__name__)

#: A tier keeps its records well past the longest wait (6 h) and a long outage of the
#: deliverer; the dead letters stay for a month of replays.
TIER_RETENTION_MS = 7 * 86_400_000
DLQ_RETENTION_MS = 30 * 86_400_000


def tier_topics(settings: Settings, endpoint: Endpoint, schedule: RetrySchedule) -> tuple[str, ...]:
    """The endpoint's retry tier topics, in schedule order."""
    return tuple(settings.deliver_retry_topic(endpoint.name, t) for t in schedule.labels())


def event_topics(settings: Settings, endpoint: Endpoint, kinds: Sequence[str]) -> tuple[str, ...]:
    """The event topics of the ``kinds`` the endpoint wants."""
    return tuple(settings.event_topic(k) for k in kinds if endpoint.wants_kind(k))


def replayed_topic(settings: Settings) -> TopicSpec:
    """Where ``--replay`` marks the dead letters it put back (kept as long as they are)."""
    return TopicSpec(
        settings.topic_deliver_replayed, settings.partitions, retention_ms=DLQ_RETENTION_MS
    )


def deliver_topics(
    settings: Settings,
    endpoints: Sequence[Endpoint],
    schedule: RetrySchedule,
    kinds: Sequence[str],
) -> list[TopicSpec]:
    """Every topic the deliverer reads or writes."""
    n = settings.partitions
    specs = [
        TopicSpec(settings.topic_deliver_dlq, n, retention_ms=DLQ_RETENTION_MS),
        replayed_topic(settings),
    ]
    wanted = sorted({t for e in endpoints for t in event_topics(settings, e, kinds)})
    specs += [TopicSpec(t, n) for t in wanted]
    for endpoint in endpoints:
        specs += [
            TopicSpec(t, n, retention_ms=TIER_RETENTION_MS)
            for t in tier_topics(settings, endpoint, schedule)
        ]
    return specs


async def ensure_deliver_topics(
    settings: Settings, client_kwargs: Mapping[str, object], specs: Sequence[TopicSpec]
) -> list[str]:
    """Create the missing topics of ``specs``; wait until the brokers list them all."""
    admin = await started_admin(settings, client_kwargs)
    try:
        present = set(await admin.list_topics())
        created = await create_missing(admin, settings, [s for s in specs if s.name not in present])
        # Topics created now with all their partitions led; those found, with one at least
        # (their count is the worker's to check).
        await wait_visible(admin, {s.name: s.partitions if s.name in created else 1 for s in specs})
        return created
    finally:
        await admin.close()
