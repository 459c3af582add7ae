"""JSON log lines and the noise filter (app.logs)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logs import NOISE, JsonFormatter, NoiseFilter, configure


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_keys_and_context(restore_root: None) -> None:
    out = io.StringIO()
    configure("info", "json", out)
    log = logging.getLogger("agents.usage")
    log.info("partition %d: ready", 3, extra={"partition": 3, "account_id": "acme"})
    log.warning("no context here")
    first, second = _lines(out)
    assert first["level"] == "info"
    assert first["logger"] == "agents.usage"
    assert first["message"] == "partition 3: ready"
    assert first["partition"] == 3
    assert first["account_id"] == "acme"
    assert str(first["time"]).endswith("Z") and len(str(first["time"])) == 24
    assert "partition" not in second and "account_id" not in second


def test_a_traceback_is_one_string_field_on_one_line(restore_root: None) -> None:
    out = io.StringIO()
    configure("info", "json", out)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("engine").exception("step failed")
    assert len(out.getvalue().splitlines()) == 1
    [line] = _lines(out)
    assert "ValueError: boom" in str(line["exc_info"])
    assert "Traceback" in str(line["exc_info"])


def test_a_message_with_newlines_stays_one_line(restore_root: None) -> None:
    out = io.StringIO()
    configure("info", "json", out)
    logging.getLogger("faust.worker").warning("table:\n+---+\n| x |")
    assert len(out.getvalue().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "level", "message"),
    [
        ("faust.worker", logging.INFO, "[^Worker]: Starting..."),
        ("faust.transport.producer", logging.INFO, "[^--Producer]: Creating topic 'x'"),
        ("mode.services", logging.INFO, "[^---Fetcher]: Stopping..."),
        ("app.faust_internals", logging.INFO, "[^-MomentsApp]: Starting..."),
        (
            "app.faust_internals",
            logging.WARNING,
            "[^-MomentsApp]: Missing sensor state for rebalance #1",
        ),
        ("aiokafka.consumer.subscription_state", logging.INFO, "Updating subscribed topics to: x"),
        ("aiokafka.consumer.group_coordinator", logging.INFO, "(Re-)joining group g"),
        (
            "aiokafka.producer.sender",
            logging.INFO,
            "Discovered coordinator 1 for transactional id t",
        ),
        ("faust.transport.producer", logging.WARNING, "producer buffer full size 1001"),
        (
            "aiokafka.consumer.group_coordinator",
            logging.ERROR,
            "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError",
        ),
    ],
)
def test_noise_is_dropped_at_info_and_shown_as_debug(name: str, level: int, message: str) -> None:
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    assert NoiseFilter(logging.INFO).filter(record) is False
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    assert NoiseFilter(logging.DEBUG).filter(record) is True
    assert record.levelname == "DEBUG"


@pytest.mark.parametrize(
    ("name", "level", "message"),
    [
        ("engine.engine", logging.INFO, "partitions [0, 1] ready in 1.2s"),
        ("faust.worker", logging.ERROR, "[^Worker]: Crashed reason=KeyError()"),
        ("aiokafka.consumer.group_coordinator", logging.ERROR, "Heartbeat failed: unknown"),
        ("faust.transport.producer", logging.WARNING, "something else"),
        ("faust.worker", logging.INFO, "Worker ready but not in brackets"),
    ],
)
def test_what_an_operator_needs_is_kept(name: str, level: int, message: str) -> None:
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    assert NoiseFilter(logging.INFO).filter(record) is True
    assert record.levelno == level


def test_every_noise_rule_gives_its_reason() -> None:
    assert all(rule.reason for rule in NOISE)


def test_configure_replaces_every_root_handler(restore_root: None) -> None:
    logging.getLogger().addHandler(logging.StreamHandler(io.StringIO()))
    handler = configure("warning", "text", io.StringIO())
    assert logging.getLogger().handlers == [handler]
    assert logging.getLogger().level == logging.WARNING
    assert not isinstance(handler.formatter, JsonFormatter)


def test_the_partition_is_read_from_our_messages_template(restore_root: None) -> None:
    out = io.StringIO()
    configure("info", "json", out)
    log = logging.getLogger("engine.engine")
    log.info("partition %d: account plans read; usage released", 5)
    log.info("partition %d: given", 5, extra={"partition": 6})
    log.info("partitions %s ready", [0, 1])
    log.info("partition %s: not a number", "x")
    lines = _lines(out)
    assert [line.get("partition") for line in lines] == [5, 6, None, None]


# ---------------------------------------------------------------- issue 16, item 11


def _produce_answered(error_code: int) -> None:
    """aiokafka's own handling of a produce answer with ``error_code`` for one partition
    (``SendProduceReqHandler.handle_response``, which logs the retry as it does live)."""
    from types import SimpleNamespace

    from aiokafka.producer.sender import SendProduceReqHandler
    from aiokafka.structs import TopicPartition

    client = SimpleNamespace(force_metadata_update=lambda: None)
    sender = SimpleNamespace(_retry_backoff=0.1, client=client, _txn_manager=object())
    handler = SendProduceReqHandler(sender, {TopicPartition("t-changelog", 3): object()})
    response = SimpleNamespace(
        API_VERSION=7, topics=[("t-changelog", [(3, error_code, -1, -1, -1)])]
    )
    handler.handle_response(response)


@pytest.fixture
def restore_sender_logger() -> Iterator[None]:
    from app.logs import AIOKAFKA_SENDER_LOGGER

    sender = logging.getLogger(AIOKAFKA_SENDER_LOGGER)
    filters, level = list(sender.filters), sender.level
    yield
    sender.filters[:] = filters
    sender.setLevel(level)


def test_a_retried_produce_is_counted_and_kept_out_of_the_log(
    restore_root: None, restore_sender_logger: None
) -> None:
    from app.logs import install_kafka_retry_counter

    out = io.StringIO()
    configure("info", "text", out)
    counted: list[str] = []
    install_kafka_retry_counter(counted.append)
    _produce_answered(19)  # NOT_ENOUGH_REPLICAS, as the broker's transaction verification answers
    _produce_answered(19)
    assert out.getvalue() == ""
    assert counted == ["NotEnoughReplicasError", "NotEnoughReplicasError"]


def test_a_retried_produce_is_counted_when_the_log_shows_errors_only(
    restore_root: None, restore_sender_logger: None
) -> None:
    from app.logs import install_kafka_retry_counter

    configure("error", "text", io.StringIO())
    counted: list[str] = []
    install_kafka_retry_counter(counted.append)
    _produce_answered(6)  # NOT_LEADER_FOR_PARTITION
    assert counted == ["NotLeaderForPartitionError"]


def test_a_retried_produce_shows_at_debug(restore_root: None) -> None:
    out = io.StringIO()
    configure("debug", "text", out)
    _produce_answered(19)
    assert " DEBUG aiokafka.producer.sender: Got error produce response" in out.getvalue()


def _drop_a_failed_future(exc: BaseException) -> None:
    import asyncio
    import gc

    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()
        future.set_exception(exc)
        del future  # never retrieved: asyncio reports it when the future is collected
        gc.collect()
    finally:
        loop.close()


def test_aiokafka_s_unretrieved_futures_of_a_fenced_producer_stay_out_of_the_log(
    restore_root: None,
) -> None:
    from aiokafka.errors import ProducerFenced

    out = io.StringIO()
    configure("info", "text", out)
    _drop_a_failed_future(ProducerFenced())
    assert out.getvalue() == ""
    _drop_a_failed_future(RuntimeError("ours"))  # anything else is still an error
    assert "ERROR asyncio: Future exception was never retrieved" in out.getvalue()
    assert "RuntimeError: ours" in out.getvalue()


def _aiokafka_record(created: float, node: int = 1) -> logging.LogRecord:
    """aiokafka's connection error as ``client.py`` logs it, made at ``created``."""
    record = logging.getLogger("aiokafka").makeRecord(
        "aiokafka",
        logging.ERROR,
        __file__,
        0,
        "Unable connect to node with id %s: %s",
        (node, "[Errno 111] Connect call failed ('127.0.0.1', 9092)"),
        None,
    )
    record.created = created
    return record


def test_a_broker_away_shows_one_connection_error_a_minute(restore_root: None) -> None:
    out = io.StringIO()
    handler = configure("info", "text", out)
    for i in range(600):  # ten a second for a minute, as while a broker is away
        handler.handle(_aiokafka_record(1000.0 + i / 10, node=i % 2))
    handler.handle(_aiokafka_record(1060.5))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(
        "Unable connect to node with id 0: [Errno 111] Connect call failed ('127.0.0.1', 9092)"
    )
    assert lines[1].endswith(
        "Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 9092)"
        " (and 599 more like it in the last 60s, at debug level)"
    )
    # Other errors are not held back.
    logging.getLogger("aiokafka").error("Something else went wrong")
    assert out.getvalue().splitlines()[-1].endswith("ERROR aiokafka: Something else went wrong")
