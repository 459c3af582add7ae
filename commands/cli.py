"""The ``moments`` command: ``worker``, ``check-config``, ``simulate``, ``tail``, ``status``,
``deliver``, ``receive``.

Configuration comes from ``MOMENTS_*`` variables only; a bad one stops the command
with one line naming it (exit status 2) before anything connects to Kafka.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence

from domain.errors import ConfigError

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2


def _fail(exc: Exception) -> int:
    from config.settings import log_options

    if log_options(os.environ)[1] == "json":
        # A log pipeline reading JSON lines gets this one as JSON too.
        logger.error("configuration error: %s", exc)
    else:
        print(f"moments: configuration error: {exc}", file=sys.stderr)
    return EXIT_CONFIG


# Each command's module is imported when it runs: `moments tail` need not load Faust.


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate settings, the plan catalog and the Kafka codecs, and print a summary."""
    from commands.check_config import run_check_config

    return run_check_config(args)


def cmd_worker(args: argparse.Namespace) -> int:
    """Check the codecs and topics, then run a Faust worker with the engine until SIGTERM."""
    from commands.worker.run import run_worker

    return run_worker(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish realistic plans and usage (with occasional bad records) to Kafka."""
    from commands.simulate.publish import run_simulation

    return run_simulation(args)


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the event topics and print each event."""
    from commands.tail.follow import run_tail

    return run_tail(args)


def cmd_status(args: argparse.Namespace) -> int:
    """Print each worker's partitions, lag, state size and readiness."""
    from commands.status.fetch import run_status

    return run_status(args)


def cmd_deliver(args: argparse.Namespace) -> int:
    """POST each event to its webhook endpoints until SIGTERM, or replay dead letters."""
    from commands.deliver.run import run_deliver

    return run_deliver(args)


def cmd_receive(args: argparse.Namespace) -> int:
    """Take webhooks on loopback, verify their signatures and print each one."""
    from commands.receive.serve import run_receive

    return run_receive(args)


def _webhook_secret(text: str) -> str:
    from config.settings import is_webhook_secret

    if not is_webhook_secret(text):
        # The value is not echoed: it may be a real secret with a typo.
        raise argparse.ArgumentTypeError("expected whsec_ followed by base64 (at least 12 bytes)")
    return text


def _port(text: str) -> int:
    value = _count(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {value}")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seconds_or_rate(*, zero_ok: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            rule = "a number >= 0" if zero_ok else "a number > 0"
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


def _event_kind(text: str) -> str:
    import re

    from domain.wording.kinds import KINDS as EVENT_KINDS

    # A rule's kind (custom.<id>) is checked against the catalog when tail starts.
    if text not in EVENT_KINDS and not re.fullmatch(r"custom(\.[a-z0-9-]{1,40})?", text):
        raise argparse.ArgumentTypeError(
            f"unknown event kind {text!r}; accepted: {', '.join(EVENT_KINDS)}, "
            "custom.<rule id>, or custom (every rule of [[moments]])"
        )
    return text


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    help_text: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """The subcommand ``name``, run by ``func``."""
    parser = sub.add_parser(name, help=help_text, description=description)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``moments`` argument parser."""
    parser = argparse.ArgumentParser(prog="moments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _command(sub, "worker", cmd_worker, "run a stream-processing worker")
    _command(
        sub,
        "check-config",
        cmd_check_config,
        "validate settings, the plan catalog and the webhook endpoints",
    )
    sim = _command(
        sub,
        "simulate",
        cmd_simulate,
        "publish simulated plans and usage",
        description="Publish one plan per account, then realistic usage keyed by account id: "
        "daily rhythms, bursts, a couple of accounts that near their limit within minutes, "
        "occasional duplicates and one bad record in --bad-every. Ctrl-C or SIGTERM stops it.",
    )
    sim.add_argument("--accounts", type=_count(1), default=20, help="number of simulated accounts")
    sim.add_argument(
        "--rate",
        type=_seconds_or_rate(zero_ok=False),
        default=50.0,
        help="usage records per second",
    )
    sim.add_argument(
        "--duration",
        type=_seconds_or_rate(zero_ok=True),
        default=0.0,
        help="seconds to run (0: until stopped)",
    )
    sim.add_argument(
        "--bad-every", type=_count(0), default=200, help="one bad record in this many (0: none)"
    )
    sim.add_argument("--seed", type=int, default=1, help="random seed (same seed, same traffic)")
    sim.add_argument(
        "--no-showcase",
        dest="showcase",
        action="store_false",
        help="leave out the demo accounts whose history and records trigger every kind of moment",
    )
    tail = _command(
        sub,
        "tail",
        cmd_tail,
        "print moment events as they arrive",
        description="Follow the event topics (read_committed, no consumer group) and print each "
        "event on two lines: time, kind, account, metric and the key figures of its kind, then "
        "its message title.",
    )
    tail.add_argument(
        "kinds",
        nargs="*",
        type=_event_kind,
        metavar="KIND",
        help="a kind of moment, e.g. threshold-hit, milestone, custom.<rule id>, or custom for "
        "every rule of [[moments]] (default: every kind)",
    )
    tail.add_argument("--json", action="store_true", help="print each event as a JSON line")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest event kept"
    )
    status = _command(
        sub,
        "status",
        cmd_status,
        "show each worker's partitions, lag, state size and readiness",
        description="Ask the given workers' /status endpoints (and every other member of the "
        "group they name) and print one line per worker. Exit status 1 when a worker is "
        "unreachable or not ready.",
    )
    status.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="a worker's base URL, e.g. http://worker-0:6066; repeatable "
        "(default: http://127.0.0.1:MOMENTS_WEB_PORT); the rest of the fleet is discovered",
    )
    status.add_argument("--json", action="store_true", help="print the answers as JSON")
    deliver = _command(
        sub,
        "deliver",
        cmd_deliver,
        "POST moment events to the webhook endpoints configured for them",
        description="Read the event topics and POST each event, signed per Standard Webhooks, "
        "to every endpoint of MOMENTS_ENDPOINTS_FILE that wants it; failed deliveries are "
        "retried through retry topics, then dead-lettered. With --replay, put dead-lettered "
        "deliveries back onto their endpoint's first retry tier (the running deliverers send "
        "them) and exit.",
    )
    deliver.add_argument(
        "--replay", action="store_true", help="re-send dead-lettered deliveries, then exit"
    )
    deliver.add_argument(
        "--endpoint", metavar="NAME", help="with --replay: only this endpoint's dead letters"
    )
    deliver.add_argument(
        "--event-id", metavar="ID", help="with --replay: only this event's dead letters"
    )
    receive = _command(
        sub,
        "receive",
        cmd_receive,
        "take webhooks locally, verify their signatures and print them",
        description="Serve HTTP on loopback: every POST is verified as a Standard Webhooks "
        "receiver would (webhook-id, webhook-timestamp within 5 minutes, a v1 signature under "
        "one of the secrets) and answered 204, or 401 with the reason; each verified webhook "
        "prints one line: webhook-id, kind, account, message title. GET /counts answers the "
        "counts. Ctrl-C or SIGTERM stops it.",
    )
    receive.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    receive.add_argument(
        "--port", type=_port, default=8099, help="port to listen on (default: 8099)"
    )
    receive.add_argument(
        "--secret",
        action="append",
        type=_webhook_secret,
        metavar="whsec_...",
        help="a secret webhooks may be signed with; repeat it while one is rotated "
        "(default: MOMENTS_RECEIVER_SECRET, which keeps it out of the process list)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moments`` console script."""
    from app.logs import configure
    from app.redaction import install_kafka_credentials_filter
    from config.settings import log_options

    args = build_parser().parse_args(argv)
    configure(*log_options(os.environ))
    # Every command may talk SASL: aiokafka would log the credentials at debug level.
    install_kafka_credentials_filter()
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        return _fail(exc)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
