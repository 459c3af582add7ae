"""``moments tail``'s Kafka side: follow the event topics and print each event.

The consumer reads ``read_committed`` (only events of committed transactions, as a notifier
would) without a consumer group, so it never disturbs anyone's offsets. It assigns partitions
itself and looks for new ones every few seconds: a topic the worker creates after ``tail``
started is read from its beginning, so no event of it is missed, while the topics that existed
at start are read from their end (or from the beginning with ``--from-beginning``).
The lines themselves come from :mod:`commands.tail.render`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from commands.signals import install_stop_handlers
from commands.tail.render import format_event, json_line, parse_kinds

logger = logging.getLogger(__name__)

DISCOVER_EVERY_S: Final = 5.0
POLL_TIMEOUT_MS: Final = 500


class _Follower:
    """Keeps a group-less consumer assigned to every partition of the wanted topics."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        admin: AIOKafkaAdminClient,
        topics: Sequence[str],
        from_beginning: bool,
    ) -> None:
        self.consumer = consumer
        self.admin = admin
        self.topics = topics
        self.from_beginning = from_beginning
        self.assigned: set[TopicPartition] = set()
        self.first = True
        self.missing_reported: set[str] = set()

    async def _partitions(self) -> set[TopicPartition]:
        present = set(await self.admin.list_topics())
        # Describe only topics that exist: asking for a missing one can auto-create it.
        wanted = [t for t in self.topics if t in present]
        for topic in self.topics:
            if topic not in present and topic not in self.missing_reported:
                self.missing_reported.add(topic)
                print(
                    f"moments tail: topic {topic} does not exist yet (`moments worker` creates "
                    "it); waiting for it",
                    file=sys.stderr,
                    flush=True,
                )
        partitions: set[TopicPartition] = set()
        for info in await self.admin.describe_topics(wanted) if wanted else []:
            if info.get("error_code", 0) != 0:
                continue
            for part in info.get("partitions", []):
                partitions.add(TopicPartition(info["topic"], part["partition"]))
        return partitions

    async def refresh(self) -> None:
        """Assign new partitions, keeping the position of those already followed."""
        partitions = await self._partitions()
        if partitions == self.assigned and not self.first:
            return
        kept = partitions & self.assigned
        positions = {tp: await self.consumer.position(tp) for tp in kept}
        new = sorted(partitions - self.assigned)
        self.consumer.assign(sorted(partitions))
        for tp, offset in positions.items():
            self.consumer.seek(tp, offset)
        if new:
            if self.first and not self.from_beginning:
                await self.consumer.seek_to_end(*new)
            else:
                await self.consumer.seek_to_beginning(*new)
        self.assigned = partitions
        self.first = False


def _emit(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


async def _tail(args: argparse.Namespace, kinds: tuple[str, ...], out: TextIO) -> int:
    from app.security import client_kwargs
    from config.settings import load_settings

    settings = load_settings(os.environ)
    kwargs = client_kwargs(settings)
    bootstrap = list(settings.kafka_bootstrap)
    kind_of = {settings.event_topic(kind): kind for kind in kinds}
    stop = asyncio.Event()
    install_stop_handlers(asyncio.get_running_loop(), stop)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="moments-tail",
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **kwargs,
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="moments-tail", **kwargs)
    try:
        await admin.start()
        await consumer.start()
        follower = _Follower(consumer, admin, list(kind_of), args.from_beginning)
        loop = asyncio.get_running_loop()
        next_discovery = 0.0
        while not stop.is_set():
            if loop.time() >= next_discovery:
                try:
                    await follower.refresh()
                except KafkaError as exc:  # a hiccup of the cluster: keep what we follow
                    logger.warning("could not refresh the event topics' partitions: %r", exc)
                next_discovery = loop.time() + DISCOVER_EVERY_S
            if not follower.assigned:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=DISCOVER_EVERY_S)
                continue
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            messages = sorted(
                (m for batch in batches.values() for m in batch), key=lambda m: m.timestamp
            )
            for message in messages:
                if message.value is None:
                    continue  # a tombstone: not an event
                kind = kind_of.get(message.topic, message.topic)
                if args.json:
                    line = json_line(message.value)
                    if line is None:
                        print(
                            f"moments tail: skipped a value that is not JSON at "
                            f"{message.topic}/{message.partition}@{message.offset}",
                            file=sys.stderr,
                            flush=True,
                        )
                        continue
                else:
                    line = format_event(kind, message.key, message.value, message.timestamp)
                _emit(out, line)
    except KafkaError as exc:
        print(
            f"moments tail: Kafka at {','.join(bootstrap)} failed: {exc!r}; "
            "check MOMENTS_KAFKA_BOOTSTRAP and that the brokers are up",
            file=sys.stderr,
        )
        return 1
    finally:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), timeout=10)
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(admin.close(), timeout=10)
    return 0


def _known_kinds() -> tuple[str, ...]:
    """The kinds a worker with the configured catalog emits: the built-in ones, and one per
    rule of its ``[[moments]]``; the built-in ones alone when the catalog cannot be read."""
    from config.settings import load_settings
    from domain.errors import ConfigError
    from domain.plans.catalog import load_catalog
    from domain.wording.kinds import KINDS, event_kinds

    try:
        return event_kinds(load_catalog(load_settings(os.environ).plans_file))
    except ConfigError as exc:
        print(f"moments tail: following the built-in kinds only: {exc}", file=sys.stderr)
        return KINDS


def run_tail(args: argparse.Namespace) -> int:
    """Entry point of ``moments tail``; returns the exit status."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # aiokafka logs every (re)assignment at INFO: noise between the events we print.
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        kinds = parse_kinds(args.kinds, _known_kinds())
    except ValueError as exc:
        print(f"moments tail: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_tail(args, kinds, sys.stdout))
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: nothing left to say. Point stdout at
        # devnull so that the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
