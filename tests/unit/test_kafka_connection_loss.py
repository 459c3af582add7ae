"""A Kafka request on a connection the broker has just reset fails as a connection error
on either event loop (app.faust_internals.mend_closed_transport_writes).

The broker resets a connection (RST): the transport reports the loss, and aiokafka learns
of it one or two loop iterations later, when its read task ends. A request sent in between
(another coroutine's: a heartbeat, a fetch, a produce) writes to the lost transport. Under
asyncio that write is dropped and the request fails with ``KafkaConnectionError``, which
every aiokafka routine retries; uvloop raises ``RuntimeError`` from the write ("the
handler is closed", aio-libs/aiokafka#1038), which aiokafka's coordinator, fetcher and
sender routines do not expect: the routine dies ("Unexpected error in ... routine").
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Iterator

import pytest
import uvloop
from aiokafka.conn import AIOKafkaConnection, AIOKafkaProtocol
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from app.faust_internals import mend_closed_transport_writes

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    made = LOOPS[request.param]()
    try:
        yield made
    finally:
        made.close()


async def _request_in_the_window() -> BaseException | None:
    """Connect, have the peer reset the connection, and send a request right after the
    transport reported the loss (before aiokafka's read task closed the connection)."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        conn = AIOKafkaConnection("127.0.0.1", port, request_timeout_ms=5000)
        # What AIOKafkaConnection.connect does, without its ApiVersions round trip.
        conn._closed_fut = loop.create_future()  # noqa: SLF001
        reader = asyncio.StreamReader(loop=loop)
        protocol = AIOKafkaProtocol(conn._closed_fut, reader, loop=loop)  # noqa: SLF001
        transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
        conn._reader, conn._protocol = reader, protocol  # noqa: SLF001
        conn._writer = asyncio.StreamWriter(transport, protocol, reader, loop)  # noqa: SLF001
        conn._read_task = conn._create_reader_task()  # noqa: SLF001
        conn._versions = {MetadataRequest.API_KEY: (0, 0)}  # noqa: SLF001

        outcome: asyncio.Future[BaseException | None] = loop.create_future()

        async def wait_for(sent: asyncio.Future[object]) -> None:
            try:
                await sent
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                outcome.set_result(exc)
            else:
                outcome.set_result(None)

        def another_request() -> None:
            try:
                sent = conn.send(MetadataRequest([]))
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                outcome.set_result(exc)
                return
            asyncio.ensure_future(wait_for(sent))

        reported = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            reported(exc)
            loop.call_soon(another_request)

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset, not an orderly close
        try:
            return await asyncio.wait_for(outcome, 5)
        finally:
            conn.close()


def test_a_request_on_a_reset_connection_fails_as_a_connection_error(
    loop: asyncio.AbstractEventLoop,
) -> None:
    mend_closed_transport_writes()
    error = loop.run_until_complete(_request_in_the_window())
    assert isinstance(error, KafkaConnectionError), repr(error)
