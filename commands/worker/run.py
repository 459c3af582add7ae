"""``moments worker``: check the codecs and topics, then run a Faust worker with the engine."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os

from app.codecs import check_codecs
from app.faust_internals import Worker, mend_closed_transport_writes
from app.logs import install_kafka_retry_counter
from app.preflight import check_broker_access_sync
from app.security import client_kwargs
from app.topology import ensure_topics_sync
from commands.worker.wiring import install, worker_runtime, worker_tables
from config.settings import EventLoop, load_settings, unknown_variables
from domain.wording.kinds import event_kinds
from state.store import pin_mmap_threshold
from web.views import register

logger = logging.getLogger(__name__)


def run_worker(_: argparse.Namespace) -> int:
    """Check the codecs and topics, then run a Faust worker with the engine until SIGTERM."""
    # Before RocksDB allocates anything: large blocks it frees must not stay in
    # malloc's heaps (issue #8, see pin_mmap_threshold).
    pin_mmap_threshold()
    settings = load_settings(os.environ)
    for name in unknown_variables(os.environ):
        logger.warning("%s is not a setting of usage-moments (typo?)", name)
    # Before any loop exists: the checks below and Faust's worker each make theirs.
    use_event_loop(settings.event_loop)
    check_codecs()
    runtime = worker_runtime(settings)
    retries = runtime.metrics.kafka_retries
    install_kafka_retry_counter(lambda error: retries.labels(error=error).inc())
    # One clear line naming the setting when Kafka refuses us, before clients that retry.
    check_broker_access_sync(settings, client_kwargs(settings))
    specs = worker_tables(settings)
    kinds = event_kinds(runtime.catalog)  # one topic per rule of [[moments]] too
    ensure_topics_sync(settings, client_kwargs(settings), specs, kinds)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = install(runtime)
    register(runtime, engine)
    # Start-up objects (catalog, templates, modules) are frozen out of the collector's
    # scans; the young generation is collected every 10,000 allocations, not 700: the
    # defaults cost throughput, higher thresholds p99 latency (docs/benchmark.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    worker = Worker(runtime.app, loglevel=settings.log_level.upper(), quiet=True)
    worker.log_format = settings.log_format
    worker.shutdown_timeout_s = settings.shutdown_timeout_s
    worker.engine = engine
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process


def use_event_loop(kind: EventLoop) -> None:
    """Make every event loop created from now on a ``kind`` loop (uvloop or asyncio's)."""
    if kind == "uvloop":
        import uvloop  # noqa: PLC0415 - only when chosen

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        # aiokafka expects asyncio's writes to a lost connection (see the function).
        mend_closed_transport_writes()
    else:
        asyncio.set_event_loop_policy(None)  # the standard library's default policy
