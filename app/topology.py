"""Start-up check and creation of the Kafka topics the worker relies on.

Runs before Faust starts, so a mis-laid-out cluster stops the worker with a
message saying what to change instead of a crash deep inside table code
(Faust writes a table key to the changelog partition of the record being
processed, so inputs and changelogs must have the same partition count).

Topic settings are checked too, not only applied at creation (issue 16, item 10): a
setting that would lose state on a rebuild is put right when that only keeps more data
(a segments changelog's ``retention.ms`` raised to the life of its entries, such as
``MOMENTS_DEDUP_HORIZON`` plus a day for dedup, after the horizon grew; a table changelog
set back to ``cleanup.policy=compact``), else the worker refuses to start with one line
naming the topic and the setting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from config.settings import Settings
from domain.errors import TopologyError
from domain.wording.kinds import KINDS
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
    #: A table's changelog: the worker's own, rebuilt state comes from it.
    changelog: bool = False
    #: A segments changelog: what its retention keeps, for the operator
    #: (:attr:`state.table.TableSpec.keeps`).
    keeps: str = ""

    def config(self) -> dict[str, str]:
        """Topic configuration to create it with."""
        config: dict[str, str] = {}
        if self.compacted:
            config["cleanup.policy"] = "compact"
        if self.retention_ms is not None:
            config["cleanup.policy"] = "delete"
            config["retention.ms"] = str(self.retention_ms)
            config["retention.bytes"] = "-1"  # time alone says what is kept, not a broker cap
        return config


def required_topics(
    settings: Settings, tables: Sequence[TableSpec] = (), kinds: Sequence[str] = EVENT_KINDS
) -> list[TopicSpec]:
    """Inputs (co-partitioned), dead-letter, event and changelog topics; an event topic per
    kind of ``kinds`` (:func:`domain.wording.kinds.event_kinds`: one per rule of 3.8 too)."""
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
    specs += [TopicSpec(settings.event_topic(kind), n, co_partitioned=True) for kind in kinds]
    # Changelogs: partition p holds the state of input partition p.
    specs += [
        TopicSpec(
            t.changelog_topic(settings.app_id),
            n,
            compacted=t.changelog == "keyed",
            co_partitioned=True,
            retention_ms=t.retention_ms if t.changelog == "segments" else None,
            changelog=True,
            keeps=t.keeps,
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
    kinds: Sequence[str] = EVENT_KINDS,
) -> list[str]:
    """Check the layout, create missing topics (an event topic per kind of ``kinds``), and
    return the names created."""
    admin = await started_admin(settings, client_kwargs)
    try:
        specs = required_topics(settings, tables, kinds)
        existing: dict[str, int] = {}
        # Describe only topics that exist: a metadata request for a missing topic can
        # auto-create it with the broker's default partition count.
        present = set(await admin.list_topics())
        wanted = [s.name for s in specs if s.name in present]
        for info in await admin.describe_topics(wanted) if wanted else []:
            if info.get("error_code", 0) == 0 and info.get("partitions"):
                existing[info["topic"]] = len(info["partitions"])
        check_layout(settings, existing)
        await _check_settings(admin, settings, [s for s in specs if s.name in existing])
        created = await create_missing(
            admin, settings, [s for s in specs if s.name not in existing]
        )
        await wait_visible(admin, {s.name: existing.get(s.name, s.partitions) for s in specs})
        return created
    finally:
        await admin.close()


async def create_missing(
    admin: AIOKafkaAdminClient, settings: Settings, specs: Sequence[TopicSpec]
) -> list[str]:
    """Create the topics of ``specs`` with one request; returns the names created (and logs
    them). Shared by the worker and the deliverer.

    One request for all (a fresh worker's 30-odd topics one by one took a second of every
    first start, issue 20). The broker answers per topic: one another worker created
    meanwhile is skipped (it won the race), any other refusal stops the worker with the
    broker's reason."""
    if not specs:
        return []
    response = await admin.create_topics(
        [
            NewTopic(spec.name, spec.partitions, settings.replication, topic_configs=spec.config())
            for spec in specs
        ]
    )
    # (name, error code[, message, ...]) per topic, by the response's version.
    answered = {answer[0]: answer for answer in response.topic_errors}
    refused = [
        f"{name} (error {answer[1]}{f': {answer[2]}' if len(answer) > 2 and answer[2] else ''})"
        for name, answer in answered.items()
        if answer[1] not in (0, TopicAlreadyExistsError.errno)
    ]
    if refused:
        raise TopologyError(f"Kafka refused to create {'; '.join(refused)}")
    created = [spec.name for spec in specs if spec.name in answered and answered[spec.name][1] == 0]
    if created:
        logger.info("created topics: %s", ", ".join(created))
    return created


#: DescribeConfigs' config_source of a setting made on the topic itself (v1 and later).
_TOPIC_SOURCE = 1


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """A topic's settings as Kafka describes them."""

    #: Every setting in effect (the topic's own, else the broker's, else Kafka's default).
    values: Mapping[str, str]
    #: The settings made on the topic itself: AlterConfigs replaces all of them at once.
    own: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SettingsFix:
    """Settings to change on one topic, and why (for the log)."""

    topic: str
    changes: dict[str, str]
    reasons: list[str]
    #: Whether the reason may have cost data already (logged as a warning).
    lossy: bool = False


def check_settings(
    settings: Settings, specs: Sequence[TopicSpec], described: Mapping[str, TopicSettings]
) -> tuple[list[SettingsFix], list[str]]:
    """The fixes to make to existing topics' settings, and warnings to log.

    Raises :class:`TopologyError` for a setting that loses state and that the worker must
    not change itself. Only changes that keep more data than before are fixes.
    """
    fixes: list[SettingsFix] = []
    warnings: list[str] = []
    for spec in specs:
        found = described.get(spec.name)
        if found is None:
            continue
        values = found.values
        policy = values.get("cleanup.policy", "delete")
        deletes = "delete" in policy.split(",")
        if spec.changelog and spec.retention_ms is not None:
            # Segments (dedup keys, distinct values): each must be kept as long as its entries.
            retention = int(values.get("retention.ms", "-1"))
            if deletes and 0 <= retention < spec.retention_ms:
                fixes.append(
                    SettingsFix(
                        spec.name,
                        {"retention.ms": str(spec.retention_ms)},
                        [
                            f"raised retention.ms from {retention} to {spec.retention_ms}, "
                            f"so a rebuild finds {spec.keeps}"
                        ],
                    )
                )
            size = int(values.get("retention.bytes", "-1"))
            if deletes and size >= 0 and "retention.bytes" in found.own:
                raise TopologyError(
                    f"{spec.name} has retention.bytes={size}: it must keep every segment "
                    f"whatever their size, so a rebuild finds {spec.keeps}; set "
                    f"retention.bytes=-1 on {spec.name}"
                )
            if deletes and size >= 0:
                # The broker's default (log.retention.bytes), not a choice made for this topic.
                fixes.append(
                    SettingsFix(
                        spec.name,
                        {"retention.bytes": "-1"},
                        [
                            f"set retention.bytes=-1 (the broker's default is {size}): segments "
                            f"are kept by time whatever their size, so a rebuild finds "
                            f"{spec.keeps}"
                        ],
                    )
                )
        elif spec.changelog and spec.compacted and policy != "compact":
            fixes.append(
                SettingsFix(
                    spec.name,
                    {"cleanup.policy": "compact"},
                    [
                        f"set cleanup.policy=compact (was {policy}): a table changelog must "
                        f"keep each key's last value; state older than its retention.ms may "
                        f"already be missing from a rebuild"
                    ],
                    lossy=True,
                )
            )
        elif spec.compacted and "compact" not in policy.split(","):
            # An input: not the worker's to change. State lives in the changelogs, so only
            # a group reading it from the start again (a new MOMENTS_APP_ID) would miss plans.
            warnings.append(
                f"{spec.name} has cleanup.policy={policy}: account plans older than its "
                f"retention.ms are deleted, and a new MOMENTS_APP_ID would start without them; "
                f"set cleanup.policy=compact on {spec.name} (contract 1.2)"
            )
    return _merged(fixes), warnings


def _merged(fixes: Sequence[SettingsFix]) -> list[SettingsFix]:
    """One fix per topic: AlterConfigs sets a topic's own settings as a whole."""
    by_topic: dict[str, SettingsFix] = {}
    for fix in fixes:
        held = by_topic.get(fix.topic)
        by_topic[fix.topic] = (
            fix
            if held is None
            else SettingsFix(
                fix.topic,
                {**held.changes, **fix.changes},
                [*held.reasons, *fix.reasons],
                held.lossy or fix.lossy,
            )
        )
    return list(by_topic.values())


async def _describe_settings(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, TopicSettings]:
    """Every setting of ``names`` (topics whose description Kafka refuses are left out)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described: dict[str, TopicSettings] = {}
    try:
        responses = await admin.describe_configs(resources)
    except KafkaError as exc:
        logger.warning(
            "cannot check the settings of topics %s (%r); grant this worker DescribeConfigs "
            "on them to have them checked at start",
            ", ".join(names),
            exc,
        )
        return {}
    for response in responses:
        for error_code, message, _, name, entries in (r[:5] for r in response.resources):
            if error_code != 0:
                logger.warning(
                    "cannot check the settings of topic %s (error %d: %s); grant this "
                    "worker DescribeConfigs on it to have them checked at start",
                    name,
                    error_code,
                    message,
                )
                continue
            values: dict[str, str] = {}
            own: dict[str, str] = {}
            for entry in entries:
                key, value, source = entry[0], entry[1], entry[3]
                if value is None:
                    continue
                values[key] = value
                # v0 answers is_default (a bool) where later versions answer the source.
                mine = not source if isinstance(source, bool) else source == _TOPIC_SOURCE
                if mine:
                    own[key] = value
            described[name] = TopicSettings(values, own)
    return described


async def _check_settings(
    admin: AIOKafkaAdminClient, settings: Settings, specs: Sequence[TopicSpec]
) -> None:
    """Check existing topics' settings; fix what only keeps more data, else refuse."""
    wanted = [s for s in specs if s.changelog or s.compacted]
    described = await _describe_settings(admin, [s.name for s in wanted])
    fixes, warnings = check_settings(settings, wanted, described)
    for warning in warnings:
        logger.warning("%s", warning)
    for fix in fixes:
        # AlterConfigs sets a topic's own settings as a whole: the others are sent as they are.
        configs = {**described[fix.topic].own, **fix.changes}
        resource = ConfigResource(ConfigResourceType.TOPIC, fix.topic, configs=configs)
        try:
            responses = await admin.alter_configs([resource])
            errors = [
                (r[0], r[1]) for response in responses for r in response.resources if r[0] != 0
            ]
        except KafkaError as exc:
            errors = [(-1, repr(exc))]
        wanted_settings = ", ".join(f"{k}={v}" for k, v in fix.changes.items())
        if errors:
            code, message = errors[0]
            raise TopologyError(
                f"{fix.topic} needs {wanted_settings} and the worker could not set it (error "
                f"{code}: {message}): set it on {fix.topic}, or grant this worker AlterConfigs "
                f"on it"
            )
        for reason in fix.reasons:
            log = logger.warning if fix.lossy else logger.info
            log("topic %s: %s", fix.topic, reason)


#: Most seconds to wait for the brokers to list every topic the worker needs.
VISIBLE_TIMEOUT_S = 60.0


async def started_admin(
    settings: Settings, client_kwargs: Mapping[str, object]
) -> AIOKafkaAdminClient:
    """A started admin client of the configured cluster; :class:`TopologyError` naming the
    setting when it cannot be reached (``moments worker`` and ``moments deliver``)."""
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
    return admin


async def wait_visible(admin: AIOKafkaAdminClient, wanted: Mapping[str, int]) -> None:
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
    kinds: Sequence[str] = EVENT_KINDS,
) -> list[str]:
    """:func:`ensure_topics` for synchronous callers (the CLI, before Faust's loop)."""
    return asyncio.run(ensure_topics(settings, client_kwargs, tables, kinds))
