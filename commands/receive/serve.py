"""``moments receive``'s server: an aiohttp application on loopback that takes webhooks.

Every ``POST`` (to any path) is verified (:class:`commands.receive.verify.Verifier`): a
verified one is answered 204 and printed as one line on standard output; a missing, wrong or
stale signature is answered 401 with the reason and logged. ``GET /counts`` answers the
counts as JSON (received, repeats, refused), for scripts and tests; they are also printed
when the receiver stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Final, TextIO

from aiohttp import web

from commands.receive.verify import Counts, Verifier, received_line
from commands.signals import install_stop_handlers
from domain.errors import ConfigError

logger = logging.getLogger(__name__)

COUNTS: Final = web.AppKey("counts", Counts)


def build_receiver(verifier: Verifier, counts: Counts, out: TextIO) -> web.Application:
    """The receiver's aiohttp application: ``POST`` anywhere takes a webhook, ``GET /counts``
    tells what was taken."""

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        refusal = verifier.refusal(body, request.headers)
        webhook_id = request.headers.get("webhook-id", "")
        if refusal is not None:
            counts.refused += 1
            logger.warning("refused webhook %r: %s", webhook_id, refusal)
            return web.Response(status=401, text=refusal + "\n")
        repeat = counts.verified(webhook_id)
        out.write(received_line(webhook_id, body, repeat=repeat) + "\n")
        out.flush()
        return web.Response(status=204)

    async def show_counts(request: web.Request) -> web.Response:
        return web.json_response(request.app[COUNTS].as_json())

    app = web.Application()
    app[COUNTS] = counts
    app.router.add_get("/counts", show_counts)
    app.router.add_post("/{path:.*}", receive)
    return app


def _secrets(args: argparse.Namespace) -> list[str]:
    """``--secret`` values, else ``MOMENTS_RECEIVER_SECRET``'s; ConfigError when neither."""
    from config.settings import load_settings, webhook_secrets

    if args.secret:
        return list(args.secret)
    configured = load_settings(os.environ).receiver_secret
    if configured is None:
        raise ConfigError(
            "moments receive needs the endpoint's secret: --secret whsec_... or "
            "MOMENTS_RECEIVER_SECRET=whsec_... (comma-separated while one is rotated)"
        )
    return list(webhook_secrets(configured.get_secret_value()))


async def _serve(args: argparse.Namespace, verifier: Verifier, out: TextIO) -> Counts:
    counts = Counts()
    stop = asyncio.Event()
    install_stop_handlers(asyncio.get_running_loop(), stop)
    runner = web.AppRunner(build_receiver(verifier, counts, out), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, args.host, args.port).start()
        print(
            f"moments receive: listening on http://{args.host}:{args.port}/ "
            f"({len(verifier)} secret{'s' if len(verifier) > 1 else ''}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()
    return counts


def run_receive(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Serve until SIGTERM or Ctrl-C; 1 when the port cannot be bound."""
    verifier = Verifier(_secrets(args))
    try:
        counts = asyncio.run(_serve(args, verifier, out))
    except OSError as exc:
        print(f"moments receive: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    done = counts.as_json()
    print(
        "moments receive: {received} received ({repeats} repeats), {refused} refused".format(
            **done
        ),
        file=sys.stderr,
    )
    return 0
