"""Every reach into Faust's, mode's and aiokafka's private internals, in one place.

Written against faust-streaming 0.15.3, mode-streaming 0.7.1 and aiokafka 0.14.0 (the
versions pinned in pyproject.toml); an upgrade of any of them starts by reading this
module again. Why each reach exists:

- **Bulk records** (:class:`BulkConsumer._getmany`): Faust's per-event stream path
  (a ConsumerMessage, a task and several futures per record) caps a worker near
  7,400 records/s here. We take the engine's topics' records right where Faust's
  fetcher receives them in bulk, and hand the rest (none today) back to Faust.
  The engine's topics are registered with ``acks=False``, so Faust never acks or
  commits them: their offsets are committed by the engine, inside each step's
  transaction (exactly-once) or after it (at-least-once).
- **Holding partitions** (:meth:`BulkConsumer.hold`): Faust resumes every assigned
  partition when its own recovery ends; a partition the engine is still restoring,
  or whose account plans are not read yet, must stay paused.
- **read_committed without Faust's transactions**: the app runs Faust in
  at-least-once mode, so Faust starts no transactional producers of its own (its
  transaction manager stops producers without aborting, and logs
  ``IllegalOperation`` on shutdown); the engine does exactly-once itself, and the
  group consumer is switched to ``read_committed`` here.
- **Group coordinator state** (:meth:`BulkConsumer.coordinator_known`): Faust has no
  notion of "connected"; aiokafka's group coordinator forgets the coordinator node
  on the first failed heartbeat and finds it again only once a broker answers, which
  is what readiness needs to know while the broker is away.
- **Fetch wait** (:data:`FETCH_MAX_WAIT_MS`): Faust fixes the group consumer's
  ``fetch_max_wait_ms`` at 1,500 ms, so a partition taken over waited up to that long
  for the empty fetch its plans gate needs; we set 200 ms, and poll at least every
  200 ms (:data:`FETCH_POLL_S`; Faust polls with a 1 s timeout). While every partition
  is held, Faust's fetcher sleeps 1 s between looks; ours :data:`HELD_POLL_S`.
- **Shutdown watchdog** (:class:`Worker`): SIGTERM must end the process within
  MOMENTS_SHUTDOWN_TIMEOUT whatever Faust's own stop does. Its last line goes straight to
  file descriptor 2 from a helper thread, and the process exits after at most
  :data:`WATCHDOG_WRITE_S` whether that write finished or not: a log handler stuck on
  its lock (or a full pipe) cannot hold the exit back.
- **Consumer thread stop** (:meth:`_Thread.on_thread_stop`): aiokafka 0.14's
  ``Fetcher.close`` cancels its pending fetches and awaits them; a fetch that failed
  (the broker is away) sleeps its retry backoff outside the ``try`` that absorbs the
  cancel, so ``close`` raises ``CancelledError``. Then ``AIOKafkaConsumer.stop`` never
  closes its client, the consumer thread dies in ``on_thread_stop``, mode never sets
  the thread's shutdown event (``ServiceThread._start_thread`` sets it only on an
  ``Exception``; ``CancelledError`` is not one), the worker's stop waits for that event
  until the watchdog fires, and the thread's traceback reaches the log through mode's
  stderr redirect one write at a time (about a hundred WARNING lines of one fragment
  each). The thread absorbs that error, closes the client itself, and always sets the
  shutdown event; what a thread still raises is logged as one record
  (:func:`log_thread_exception`).
- **Our log handlers** (:meth:`Worker.on_setup_root_logger`): mode's worker clears the
  root logger's handlers at start and installs its own (colours, ASCII tables); this
  hook, which mode calls right after, puts ours (``app.logs``) back.
- **The fleet's URLs** (:func:`fleet_urls`): the partition assignor ships every member's
  URL with each assignment (what ``topic_route`` forwards by); ``moments status`` reads
  the fleet from any one worker.
- **No second's sleep at start** (:class:`PromptTableManager`): Faust's table manager
  sleeps 1 s before it registers its tables (for tables declared late), and the
  consumer subscribes only after that; the worker declares no Faust table (the engine
  keeps its own), so the sleep was a second of every start (issue 20).
- **aiokafka's transactional producer** (:class:`ProducerInternals`, what
  :mod:`engine.committers` is given): aiokafka has no public call that adds a partition
  to a transaction ahead of its first batch; no public transaction timeout; no public
  way to set a partition's sequence number back after the broker refused a batch (too
  large), which otherwise fails every later batch there as out of order; no public
  "fatal" state (its sender died fenced); and ``stop`` waits for pending batches for
  ever while the broker is away, so a stop that runs out of time cancels its sender.
- **Writes to a lost connection** (:func:`mend_closed_transport_writes`): once a broker
  resets a connection, aiokafka notices only when its read task ends, a loop iteration or
  two later; a request sent meanwhile writes to the lost transport. asyncio drops that
  write and the request fails with ``KafkaConnectionError``, which aiokafka's routines
  retry; uvloop (the worker's loop) raises ``RuntimeError`` ("the handler is closed",
  aio-libs/aiokafka#1038, open in 0.14.0), and the coordinator, fetcher or sender routine
  that sent it dies. Such a write fails as aiokafka's own ``OSError`` branch fails it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import faust
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from app.logs import JsonFormatter, LogFormat, configure, text_formatter

if TYPE_CHECKING:
    from engine.engine import Engine

logger = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"
#: Longest a fetch with nothing to return waits at the broker (Faust's own value: 1,500).
FETCH_MAX_WAIT_MS = 200
#: Longest one poll of the group consumer waits for records (Faust's own value: 1 s).
FETCH_POLL_S = 0.2
#: How often the fetcher looks for partitions released while every one is held (Faust: 1 s).
HELD_POLL_S = 0.05
#: Longest the watchdog waits for its last line to be written before it exits anyway.
WATCHDOG_WRITE_S = 0.5


class _Thread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes fetch_max_wait_ms=1500: an empty fetch then answers only after
        # 1.5 s, and every gate that waits for "a fetch has returned" (the plans gate of a
        # partition taken over, the caught-up checks of drops) waits that long. A fetch with
        # data returns at once either way. aiokafka builds its Fetcher in start() from it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        if getattr(self.consumer, "read_committed", False):
            # aiokafka builds its Fetcher in start() from this attribute.
            consumer._isolation_level = "read_committed"
        return consumer

    async def on_thread_stop(self) -> None:
        # See the module's docstring ("Consumer thread stop").
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this thread's own stop is being cancelled: not aiokafka's error
            logger.info("Kafka consumer stopped while a fetch was failing (broker away?)")
            await self._close_client()
        except Exception as exc:  # noqa: BLE001 - the stop goes on; one line says why
            logger.info(
                "Kafka consumer stopped with an error: %r",
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            await self._close_client()

    async def _close_client(self) -> None:
        """Close the connections a failed ``AIOKafkaConsumer.stop`` left open."""
        client = getattr(self._consumer, "_client", None)
        if client is None:
            return
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - best effort: the process is stopping
            logger.debug("closing the Kafka consumer's client failed", exc_info=True)

    def _start_thread(self) -> None:
        try:
            super()._start_thread()
        finally:
            # mode sets the shutdown event here only on an Exception: a thread ended by
            # anything else would leave the worker's stop waiting for it.
            try:
                self.set_shutdown()
            except RuntimeError:  # the main loop is closed: nobody waits any more
                pass

    def on_crash(self, msg: str, *fmt: Any, **kwargs: Any) -> None:
        # mode prints the message and traceback to stderr, which its worker redirects to
        # the log one write (one fragment) per record: one record instead.
        logger.error(msg.format(*fmt), exc_info=True)


class BulkConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with the engine's topics taken in bulk."""

    @property
    def engine(self) -> Engine | None:
        """The engine the app was attached to (:func:`attach`), if any."""
        engine: Engine | None = getattr(self.app, "moments_engine", None)
        return engine

    @property
    def read_committed(self) -> bool:
        """Whether the group consumer reads committed records only (exactly-once)."""
        return bool(getattr(self.app, "moments_read_committed", False))

    def _new_consumer_thread(self) -> Any:
        return _Thread(self, loop=self.loop, beacon=self.beacon)

    def _held(self) -> set[tuple[str, int]]:
        held: set[tuple[str, int]] | None = getattr(self, "_moments_held", None)
        if held is None:
            held = set()
            self._moments_held = held
        return held

    def hold(self, tps: Iterable[TopicPartition]) -> None:
        """Pause ``tps`` until :meth:`release`, whatever Faust resumes meanwhile."""
        tps = {(tp.topic, tp.partition) for tp in tps}
        self._held().update(tps)
        super().pause_partitions({TP(t, p) for t, p in tps})

    def release(self, tps: Iterable[TopicPartition]) -> None:
        """Resume ``tps`` (only those currently assigned)."""
        wanted = {(tp.topic, tp.partition) for tp in tps}
        self._held().difference_update(wanted)
        assigned = {(tp.topic, tp.partition) for tp in self.assignment()}
        super().resume_partitions({TP(t, p) for t, p in wanted if (t, p) in assigned})

    def resume_partitions(self, tps: Iterable[Any]) -> None:
        held = self._held()
        super().resume_partitions({tp for tp in tps if (tp.topic, tp.partition) not in held})

    def request_rejoin(self) -> bool:
        """Ask the group for a new assignment (a rebalance); False when not in a group yet.

        aiokafka's coordinator lives on the consumer thread's loop: the request is handed
        to that loop. The rebalance that follows calls the engine's revoke and assign as
        any other does.
        """
        thread = getattr(self, "_thread", None)
        consumer = getattr(thread, "_consumer", None)
        coordinator = getattr(consumer, "_coordinator", None)
        loop = getattr(thread, "thread_loop", None)
        if coordinator is None or loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(coordinator.request_rejoin)
        return True

    def coordinator_known(self) -> bool:
        """Whether aiokafka's group coordinator knows the broker coordinating the group.

        aiokafka sets ``coordinator_id`` to None when a heartbeat (or any group request)
        fails to reach the coordinator and sets it again once a lookup succeeds. Read
        from the web server's loop while the consumer thread writes it: one attribute
        read of a plain value.
        """
        thread = getattr(self, "_thread", None)
        consumer = getattr(thread, "_consumer", None)
        coordinator = getattr(consumer, "_coordinator", None)
        return getattr(coordinator, "coordinator_id", None) is not None

    async def _wait_next_records(self, timeout: float) -> Any:
        # With every partition held (the engine prepares them), Faust sleeps a whole second
        # before it looks again, so the plans released then waited up to that long to be
        # fetched (issue 20: start-up); look again every HELD_POLL_S instead.
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            await self.sleep(HELD_POLL_S)
            return {}, set()
        return await super()._wait_next_records(timeout)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        # Faust polls with a 1 s timeout; an idle poll is also what the engine's gates wait
        # for ("a fetch has returned since"), so poll at least every FETCH_POLL_S.
        timeout = min(timeout, FETCH_POLL_S)
        records = dict(await super()._getmany(active_partitions, timeout))
        engine = self.engine
        if engine is None:
            return records
        try:
            generation = self.app.consumer_generation_id
            mine = {tp: records.pop(tp) for tp in list(records) if tp.topic in engine.handlers}
            if mine:
                if self.flow_active and engine.accepts(generation):
                    await engine.submit(mine, generation)
                elif self.flow_active:
                    # Not ours to process now (a rebalance is under way): fetch them again.
                    for tp, items in mine.items():
                        if items:
                            await self.seek(tp, items[0].offset)
                # With the flow stopped Faust seeks every partition back to its
                # committed offset itself (Consumer.getmany).
        finally:
            engine.fetch_returned()
        return records

    async def committed_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets of ``tps``, read from the broker now.

        aiokafka's ``committed`` sends an OffsetFetch each time (it caches nothing: a
        transactional producer moves them behind the consumer's back); it runs on the
        consumer thread's loop, where the consumer lives. Partitions with no committed
        offset are left out.
        """
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        consumer = self._thread._ensure_consumer()

        async def fetch() -> list[int | None]:
            return list(await asyncio.gather(*(consumer.committed(tp) for tp in wanted)))

        found = await self._thread.call_thread(fetch)
        return {tp: int(o) for tp, o in zip(wanted, found, strict=True) if o is not None}

    async def commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """At-least-once: commit plain consumer offsets (on the consumer's thread)."""
        ok = await self._thread.commit(
            {TP(tp.topic, tp.partition): off for tp, off in offsets.items()}
        )
        if not ok:
            raise RuntimeError("offset commit refused (rebalance under way)")


class BulkTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`BulkConsumer`."""

    Consumer = BulkConsumer


class PromptTableManager(TableManager):
    """Faust's table manager, without the second it sleeps before registering tables."""

    async def on_start(self) -> None:
        """Register the (no) tables and start recovery at once: nothing is declared late."""
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class MomentsApp(faust.App):
    """A Faust app whose transport is :class:`BulkTransport`."""

    #: Set by :func:`attach`: where the consumer hands the engine's records.
    moments_engine: Engine | None = None
    moments_read_committed: bool = False

    def _new_transport(self) -> Any:
        return BulkTransport(self.conf.broker_consumer, self)


class ConsumerHooks:
    """What the engine needs of the Faust consumer (see ``engine.ownership.Hooks``)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    @property
    def consumer(self) -> BulkConsumer:
        consumer = self.app.consumer
        if not isinstance(consumer, BulkConsumer):
            raise TypeError("the app's consumer is not a BulkConsumer (see MomentsApp)")
        return consumer

    def hold(self, tps: Iterable[TopicPartition]) -> None:
        self.consumer.hold(tps)

    def release(self, tps: Iterable[TopicPartition]) -> None:
        self.consumer.release(tps)

    async def position(self, tp: TopicPartition) -> int | None:
        try:
            found = await self.consumer.position(TP(tp.topic, tp.partition))
        except Exception:  # noqa: BLE001 - no position before the first seek
            return None
        return None if found is None else int(found)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        await self.consumer.seek(TP(tp.topic, tp.partition), offset)

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return await self.consumer.committed_offsets(tps)

    async def crash(self, exc: BaseException) -> None:
        await self.app.crash(exc)

    def broker_connected(self) -> bool:
        consumer = self.app.consumer
        return isinstance(consumer, BulkConsumer) and consumer.coordinator_known()

    def rejoin(self) -> bool:
        return self.consumer.request_rejoin()


def attach(app: faust.App, engine: Engine, *, read_committed: bool) -> None:
    """Route the engine's topics' records to ``engine`` (call before the worker starts).

    Kept on ``app`` (a :class:`MomentsApp`), which its consumer reads when it fetches and
    when its thread builds the aiokafka consumer: two apps in one process do not share.
    """
    if not isinstance(app, MomentsApp):
        raise TypeError("the engine needs a MomentsApp (its consumer takes records in bulk)")
    app.moments_engine = engine
    app.moments_read_committed = read_committed


def register_topics(app: faust.App, names: Iterable[str]) -> None:
    """Subscribe the group to ``names`` without any Faust agent or acking."""
    for name in names:
        app.topics.add(app.topic(name, key_type=bytes, value_type=bytes, acks=False))


class Worker(faust.Worker):
    """Faust's worker with a hard deadline on SIGTERM/SIGINT shutdown."""

    shutdown_timeout_s: float = 30.0
    engine: Engine | None = None
    log_format: LogFormat = "text"

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # sys.__stderr__: mode redirects sys.stderr to a logger right after this hook.
        configure(logging.getLevelName(level), self.log_format, sys.__stderr__)
        # Python's default prints a thread's uncaught exception to sys.stderr, which mode
        # redirects to the log one write (one fragment) per record.
        threading.excepthook = log_thread_exception

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            _start_watchdog(self.shutdown_timeout_s, self.engine, self.log_format)
        super()._schedule_shutdown(signal)


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: a thread's uncaught exception as one log record."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    logger.error("thread %s ended with an uncaught exception", name, exc_info=exc_info)


def watchdog_line(timeout_s: float, stopped: bool, log_format: LogFormat) -> bytes:
    """The watchdog's last line, formatted as the log's records are."""
    record = logging.LogRecord(
        logger.name,
        logging.ERROR,
        __file__,
        0,
        "shutdown took longer than MOMENTS_SHUTDOWN_TIMEOUT=%ss; exiting now (%s)",
        (timeout_s, "state committed" if stopped else "step in flight abandoned"),
        None,
    )
    formatter = JsonFormatter() if log_format == "json" else text_formatter()
    return (formatter.format(record) + "\n").encode("utf-8", errors="replace")


def expire(
    timeout_s: float,
    engine: Engine | None,
    log_format: LogFormat = "text",
    *,
    fd: int = 2,
    exit: Any = os._exit,  # noqa: A002 - os._exit by default; a test passes its own
) -> None:
    """Write the watchdog's line to ``fd`` and exit, whatever the log handlers are doing.

    No logging call: a handler stuck while holding its lock (a blocked pipe, a hung
    network handler) would hold this thread too. The write itself may block on a full
    pipe, so it runs on a helper thread given :data:`WATCHDOG_WRITE_S`.
    """
    stopped = engine is None or engine.stopped
    line = watchdog_line(timeout_s, stopped, log_format)
    writer = threading.Thread(target=_write_all, args=(fd, line), daemon=True)
    writer.start()
    writer.join(WATCHDOG_WRITE_S)
    exit(0 if stopped else 1)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


def _start_watchdog(timeout_s: float, engine: Engine | None, log_format: LogFormat) -> None:
    timer = threading.Timer(max(1.0, timeout_s - 0.5), expire, (timeout_s, engine, log_format))
    timer.daemon = True
    timer.start()


def standby_partitions(app: faust.App, topic: str) -> set[int]:
    """Partitions of ``topic`` the group's assignor made this worker a standby for.

    Faust's PartitionAssignor computes standbys for every co-partitioned topic and
    ships them to each member, but only changelog topics of Faust tables get them
    as Kafka partitions; we read the list and follow our own changelogs.
    """
    try:
        standbys = app.assignor.assigned_standbys()
    except Exception:  # noqa: BLE001 - no assignment yet
        return set()
    return {tp.partition for tp in standbys if tp.topic == topic}


async def warm_router(app: faust.App, topic: str) -> None:
    """Load ``topic``'s partitions into the metadata of Faust's own producer.

    Faust's topic routing (``app.topic_route``, our ``/accounts``) hashes a key with that
    producer's metadata, which knows a topic only once the producer has used it, and ours
    never produces (the engine has its own producers): whether ``/accounts`` could route
    depended on whether the producer's first metadata fetch came after the topics were
    created. Until this returns, routing raises; afterwards it works.
    """
    producer = await app.maybe_start_producer()
    await producer._ensure_producer().partitions_for(topic)  # aiokafka waits for metadata


def fleet_urls(app: faust.App) -> list[str]:
    """URLs of every member of the group at the last assignment (this worker's included)."""
    assignor: Any = app.assignor  # faust's PartitionAssignor; its type does not declare it
    try:
        urls = set(assignor.external_topic_distribution)
    except Exception:  # noqa: BLE001 - no assignment yet
        urls = set()
    urls.add(str(app.conf.canonical_url))
    return sorted(str(u).rstrip("/") for u in urls)


class ProducerInternals:
    """What :mod:`engine.committers` needs of aiokafka's producer beyond its public API
    (aiokafka 0.14.0; see the module docstring). Stateless: one serves every producer."""

    def transaction_timeout_s(self, producer: AIOKafkaProducer) -> float | None:
        """``producer``'s transaction timeout, if it has one that can be read."""
        txn = getattr(producer, "_txn_manager", None)
        timeout_ms = getattr(txn, "transaction_timeout_ms", None)
        if isinstance(timeout_ms, int | float) and timeout_ms > 0:
            return float(timeout_ms) / 1000
        return None

    def add_partition(self, producer: AIOKafkaProducer, tp: TopicPartition) -> None:
        """Add ``tp`` to ``producer``'s open transaction ahead of its first batch: what
        ``send`` itself calls (``TransactionManager.maybe_add_partition_to_txn``)."""
        producer._txn_manager.maybe_add_partition_to_txn(tp)  # noqa: SLF001

    def sequence_number(self, producer: AIOKafkaProducer, tp: TopicPartition) -> int:
        """The sequence number ``producer`` gives its next batch to ``tp``."""
        return int(producer._txn_manager.sequence_number(tp))  # noqa: SLF001

    def set_sequence_number(self, producer: AIOKafkaProducer, tp: TopicPartition, seq: int) -> None:
        """Set ``producer``'s next sequence number for ``tp`` to ``seq``, wrapped at 2**31
        as ``TransactionManager.increment_sequence_number`` wraps it."""
        wrapped = seq - 2**32 if seq > 2**31 - 1 else seq
        producer._txn_manager._sequence_numbers[tp] = wrapped  # noqa: SLF001

    def unusable(self, producer: AIOKafkaProducer) -> bool:
        """Whether ``producer`` is in aiokafka's fatal state or its sender task ended
        (``Sender._fail_all`` moves the transaction manager to FATAL_ERROR when it dies)."""
        txn = getattr(producer, "_txn_manager", None)
        state = getattr(getattr(txn, "state", None), "name", None)
        if state == "FATAL_ERROR":
            return True
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        return task is not None and task.done()

    def cancel_sender(self, producer: AIOKafkaProducer) -> asyncio.Future[Any] | None:
        """Cancel ``producer``'s sender task (a stop that ran out of time); returns it."""
        sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
        if sender is not None:
            sender.cancel()
        return sender


def mend_closed_transport_writes() -> None:
    """Make a Kafka request written to a lost connection fail as ``KafkaConnectionError``
    under uvloop too, as it does under asyncio (see the module's docstring, "Writes to a
    lost connection"). Idempotent; changes nothing under asyncio, whose writes to a lost
    transport never raise."""
    for name in ("send", "_send_sasl_token"):
        write = getattr(AIOKafkaConnection, name)
        if not getattr(write, "_moments_mended", False):
            setattr(AIOKafkaConnection, name, _mended(write))


def _mended(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def mended(conn: AIOKafkaConnection, *args: Any, **kwargs: Any) -> Any:
        try:
            return write(conn, *args, **kwargs)
        except RuntimeError as err:
            writer = getattr(conn, "_writer", None)
            if writer is None or not writer.transport.is_closing():
                raise  # not a write to a lost transport
            # What aiokafka does when the write raises OSError.
            conn.close(reason=CloseReason.CONNECTION_BROKEN, exc=err)
            raise KafkaConnectionError(
                f"Connection at {conn.host}:{conn.port} broken: {err}"
            ) from err

    mended._moments_mended = True  # type: ignore[attr-defined]
    return mended
