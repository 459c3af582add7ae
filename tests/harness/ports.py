"""Loopback ports for the workers and servers a test or benchmark starts."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator

# Spread by process, so two runs on one machine rarely race for a port.
# TEST_PORTS=FIRST-LAST confines them to a range (a machine shared by several runs),
# reused round-robin: a stopped worker's port is free again.
_first, _, _last = os.environ.get("TEST_PORTS", "").partition("-")
_range = range(int(_first), int(_last) + 1) if _first and _last else None
_ports: Iterator[int] = (
    itertools.cycle(_range) if _range else itertools.count(16066 + (os.getpid() % 40) * 50)
)


def free_port() -> int:
    """A loopback port nothing listens on, for a worker or a server a run starts."""
    for _ in _range or itertools.count():
        port = next(_ports)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise AssertionError(f"every port of TEST_PORTS={os.environ['TEST_PORTS']} is taken")


def broker_ports(count: int) -> list[int]:
    """``count`` ports nothing is bound to, for a broker a test runs of its own: of
    TEST_BROKER_PORTS=LOW-HIGH (default 19300-19399: a machine shared by several runs
    gives each its own range), from a per-process spot."""
    low, _, high = (os.environ.get("TEST_BROKER_PORTS") or "19300-19399").partition("-")
    return _bindable(count, int(low), int(high))


def _bindable(count: int, low: int, high: int) -> list[int]:
    span = high - low + 1
    start = os.getpid() % span
    found: list[int] = []
    for i in range(span):
        port = low + (start + i) % span
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError(f"no {count} free ports in {low}-{high}")
