"""Graceful stop of the command-line tools (``moments simulate``, ``moments tail``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def install_stop_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop on SIGTERM, and on SIGINT unless the caller ignores it.

    A shell starts background jobs with SIGINT ignored so that Ctrl-C reaches only the
    foreground job; honouring that lets ``scripts/run-local`` stop us in order. Repeated signals
    are harmless: the first one starts a clean stop, later ones change nothing.
    """
    signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signals.append(signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
