"""The shutdown watchdog exits whatever the log is doing, and a thread's crash is one record.

Issue 16, item 9: the watchdog logged through the logging module (and called
``logging.shutdown``) before ``os._exit``; a handler stuck while holding its lock kept
the process alive past ``MOMENTS_SHUTDOWN_TIMEOUT``. And a thread's uncaught exception
was printed to stderr, which mode's worker redirects to the log one write per record.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import threading
from collections.abc import Iterator

import pytest

from app import faust_internals
from app.logs import configure

#: Generous: the watchdog gives its write WATCHDOG_WRITE_S; this only bounds a broken run.
WAIT_S = 30.0


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hook = threading.excepthook
    yield
    threading.excepthook = hook
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


class _Exit:
    def __init__(self) -> None:
        self.code: int | None = None
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.code = code
        self.called.set()


def _expire_in_thread(fd: int, exit_: _Exit, log_format: str = "text") -> None:
    thread = threading.Thread(
        target=faust_internals.expire,
        args=(30.0, None, log_format),
        kwargs={"fd": fd, "exit": exit_},
        daemon=True,  # on the old code it never returns: it must not hold pytest up
    )
    thread.start()
    assert exit_.called.wait(WAIT_S), "the watchdog did not exit"


def test_the_watchdog_exits_while_a_log_handler_is_stuck(restore_root: None) -> None:
    handler = configure("info", "text", io.StringIO())
    handler.acquire()  # as a handler blocked in emit() holds it
    read_end, write_end = os.pipe()
    try:
        exit_ = _Exit()
        _expire_in_thread(write_end, exit_)
        assert exit_.code == 0  # no engine: nothing abandoned
        line = os.read(read_end, 4096).decode()
        assert "ERROR app.faust_internals: shutdown took longer than " in line
        assert "MOMENTS_SHUTDOWN_TIMEOUT=30.0s; exiting now (state committed)" in line
    finally:
        handler.release()
        os.close(read_end)
        os.close(write_end)


def test_the_watchdog_exits_when_its_line_cannot_be_written(restore_root: None) -> None:
    read_end, write_end = os.pipe()
    try:
        # Fill the pipe: a stderr nobody reads.
        flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
        fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            while True:
                os.write(write_end, b"x" * 65536)
        except BlockingIOError:
            pass
        fcntl.fcntl(write_end, fcntl.F_SETFL, flags)
        exit_ = _Exit()
        _expire_in_thread(write_end, exit_)
        assert exit_.code == 0
    finally:
        os.close(read_end)  # the writer thread gets EPIPE and ends
        os.close(write_end)


def test_the_watchdog_line_follows_the_log_format() -> None:
    line = faust_internals.watchdog_line(12.0, False, "json")
    record = json.loads(line)
    assert record["level"] == "error"
    assert record["logger"] == "app.faust_internals"
    assert record["message"].endswith("exiting now (step in flight abandoned)")
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_a_thread_s_uncaught_exception_is_one_record(restore_root: None) -> None:
    out = io.StringIO()
    configure("info", "json", out)
    threading.excepthook = faust_internals.log_thread_exception

    def crash() -> None:
        raise RuntimeError("consumer thread fell over")

    thread = threading.Thread(target=crash, name="kafka-consumer")
    thread.start()
    thread.join()
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["level"] == "error"
    assert record["message"] == "thread kafka-consumer ended with an uncaught exception"
    assert "RuntimeError: consumer thread fell over" in record["exc_info"]
