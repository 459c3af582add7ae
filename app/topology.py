"""Start-up check and creation of the Kafka topics the worker relies on.

Runs before Faust starts, so a mis-laid-out cluster stops the worker with a
message saying what to change instead of a crash deep inside table code
(Faust writes a table key to the changelog partition of the record being
processed, so inputs and changelogs must have the same partition count).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from config.settings import Settings
from domain.errors import TopologyError
from domain.kinds import KINDS
from state.table import TableSpec

logger = logging.getLogger(__name__)

EVENT_KINDS = KINDS


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the worker needs, and how to create it when missing."""

    name: str
    partitions: int
    compacted: bool = False
    co_partitioned: bool = False
    retention_ms: int | None = None

    def config(self) -> dict[str, str]:
        """Topic configuration to create it with."""
        config: dict[str, str] = {}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        if self.retention_ms is not None:
            config["cleanup.policy"] = "delete"
            config["retention.ms"] = str(self.retention_ms)
        return config


def required_topics(settings: Settings, tables: Sequence[TableSpec] = ()) -> list[TopicSpec]:
    """Inputs (co-partitioned), dead-letter, event and changelog topics."""
    n = settings.partitions
    specs = [
        TopicSpec(settings.topic_usage, n, co_partitioned=True),
        TopicSpec(settings.topic_accounts, n, compacted=True, co_partitioned=True),
        TopicSpec(settings.topic_rekey, n, co_partitioned=True),
        TopicSpec(settings.topic_plans_forward, n, co_partitioned=True),
        TopicSpec(settings.topic_ticks, n, co_partitioned=True),
        # Outputs too: they are written to the source record's partition number, inside
        # that partition's transaction, so one account's events stay in order.
        TopicSpec(settings.topic_usage_dlq, n, co_partitioned=True),
        TopicSpec(settings.topic_accounts_dlq, n, co_partitioned=True),
    ]
    specs += [TopicSpec(settings.event_topic(kind), n, co_partitioned=True) for kind in EVENT_KINDS]
    # Changelogs: partition p holds the state of input partition p.
    specs += [
        TopicSpec(
            t.changelog_topic(settings.app_id),
            n,
            compacted=t.changelog == "keyed",
            co_partitioned=True,
            retention_ms=t.retention_ms if t.changelog == "segments" else None,
        )
        for t in tables
    ]
    return specs


def check_layout(settings: Settings, existing: Mapping[str, int]) -> None:
    """Raise :class:`TopologyError` unless existing inputs fit ``MOMENTS_PARTITIONS``.

    ``existing`` maps topic name to partition count for topics already in Kafka.
    """
    usage, accounts = settings.topic_usage, settings.topic_accounts
    if usage in existing and accounts in existing and existing[usage] != existing[accounts]:
        raise TopologyError(
            f"{usage} has {existing[usage]} partitions but {accounts} has "
            f"{existing[accounts]}: both must have the same count, keyed by account id "
            f"(add partitions to the smaller one, or recreate it)"
        )
    inputs = {usage, accounts}
    for name in [s.name for s in required_topics(settings) if s.co_partitioned]:
        if name in existing and existing[name] != settings.partitions and name not in inputs:
            raise TopologyError(
                f"{name} has {existing[name]} partitions but MOMENTS_PARTITIONS="
                f"{settings.partitions}: the worker writes it partition for partition with "
                f"its inputs, so recreate {name} with {settings.partitions} partitions "
                f"(or delete it and let the worker create it)"
            )
        if name in existing and existing[name] != settings.partitions:
            raise TopologyError(
                f"{name} has {existing[name]} partitions but MOMENTS_PARTITIONS="
                f"{settings.partitions}: set MOMENTS_PARTITIONS={existing[name]} so that "
                f"the worker's tables match its inputs"
            )


async def ensure_topics(
    settings: Settings,
    client_kwargs: Mapping[str, object],
    tables: Sequence[TableSpec] = (),
) -> list[str]:
    """Check the layout, create missing topics, and return the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=list(settings.kafka_bootstrap), request_timeout_ms=15000, **client_kwargs
    )
    try:
        await admin.start()
    except KafkaError as exc:
        raise TopologyError(
            f"cannot reach Kafka at {','.join(settings.kafka_bootstrap)} ({exc!r}): "
            f"check MOMENTS_KAFKA_BOOTSTRAP and that the brokers are up"
        ) from exc
    try:
        specs = required_topics(settings, tables)
        existing: dict[str, int] = {}
        # Describe only topics that exist: a metadata request for a missing topic can
        # auto-create it with the broker's default partition count.
        present = set(await admin.list_topics())
        wanted = [s.name for s in specs if s.name in present]
        for info in await admin.describe_topics(wanted) if wanted else []:
            if info.get("error_code", 0) == 0 and info.get("partitions"):
                existing[info["topic"]] = len(info["partitions"])
        check_layout(settings, existing)
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        for spec in missing:
            topic = NewTopic(
                spec.name, spec.partitions, settings.replication, topic_configs=spec.config()
            )
            try:
                await admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another worker of the group won the race
        if created:
            logger.info("created topics: %s", ", ".join(created))
        await _visible(admin, {s.name: existing.get(s.name, s.partitions) for s in specs})
        return created
    finally:
        await admin.close()


#: Most seconds to wait for the brokers to list every topic the worker needs.
VISIBLE_TIMEOUT_S = 60.0


async def _visible(admin: AIOKafkaAdminClient, wanted: Mapping[str, int]) -> None:
    """Wait until the brokers' metadata lists every topic of ``wanted`` with all its
    partitions led.

    A topic just created is known to the controller before the brokers' metadata caches
    list it. The group's first assignment is computed from that metadata: a worker that
    joined in between was assigned nothing, and no rebalance came when the topics
    appeared (seen on a fresh broker under load: a first worker with no partitions for
    good). So the worker joins only once the topics are listed.
    """
    deadline = asyncio.get_running_loop().time() + VISIBLE_TIMEOUT_S
    missing = dict(wanted)
    while True:
        infos = await admin.describe_topics(list(missing))
        for info in infos:
            partitions = info.get("partitions") or []
            led = [p for p in partitions if p.get("leader", -1) >= 0]
            if info.get("error_code", 0) == 0 and len(led) >= missing.get(info["topic"], 1):
                missing.pop(info["topic"], None)
        if not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TopologyError(
                f"topics not listed by the brokers {VISIBLE_TIMEOUT_S:.0f} s after they were "
                f"created: {', '.join(sorted(missing))}; check the brokers' health and "
                f"MOMENTS_KAFKA_BOOTSTRAP"
            )
        await asyncio.sleep(0.2)


def ensure_topics_sync(
    settings: Settings,
    client_kwargs: Mapping[str, object],
    tables: Sequence[TableSpec] = (),
) -> list[str]:
    """:func:`ensure_topics` for synchronous callers (the CLI, before Faust's loop)."""
    return asyncio.run(ensure_topics(settings, client_kwargs, tables))
