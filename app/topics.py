"""The Faust topic objects of the worker, built once from settings."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from app.topology import EVENT_KINDS
from config.settings import Settings


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the worker reads or writes (values are raw bytes; we own the codecs)."""

    usage: faust.TopicT
    rekey: faust.TopicT
    ticks: faust.TopicT
    usage_in: faust.TopicT
    accounts: faust.TopicT
    usage_dlq: faust.TopicT
    accounts_dlq: faust.TopicT
    events: dict[str, faust.TopicT]


def build_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare the topics on ``app``; partition counts are checked by ``app.topology``."""

    def raw(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, allow_empty=True)

    return Topics(
        usage=raw(settings.topic_usage),
        rekey=raw(settings.topic_rekey),
        ticks=raw(settings.topic_ticks),
        usage_in=app.topic(
            settings.topic_usage,
            settings.topic_rekey,
            key_type=bytes,
            value_type=bytes,
            allow_empty=True,
        ),
        accounts=raw(settings.topic_accounts),
        usage_dlq=raw(settings.topic_usage_dlq),
        accounts_dlq=raw(settings.topic_accounts_dlq),
        events={kind: raw(settings.event_topic(kind)) for kind in EVENT_KINDS},
    )
