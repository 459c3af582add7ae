"""The ``moments`` command: ``worker``, ``check-config``, ``simulate``, ``tail``.

Configuration comes from ``MOMENTS_*`` variables only; a bad one stops the command
with one line naming it (exit status 2) before anything connects to Kafka.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from domain.errors import ConfigError

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2


def _fail(exc: Exception) -> int:
    print(f"moments: configuration error: {exc}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_check_config(_: argparse.Namespace) -> int:
    """Validate settings and the plan catalog, and print a summary."""
    from config.settings import load_settings, unknown_variables
    from domain.catalog import load_catalog

    settings = load_settings(os.environ)
    catalog = load_catalog(settings.plans_file)
    print("settings:")
    for name, value in settings.summary().items():
        print(f"  {name} = {value}")
    print(f"plan catalog ({settings.plans_file}): period={catalog.period} currency={catalog.currency}")
    for plan in catalog.plans:
        limits = ", ".join(f"{m}={v}" for m, v in sorted(plan.limits.items())) or "unlimited"
        print(f"  {plan.rank}. {plan.id} ({plan.name}) {plan.price} {catalog.currency}: {limits}")
    for name in unknown_variables(os.environ):
        print(f"warning: {name} is not a setting of usage-moments (typo?)")
    print("ok")
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    """Check the topics, then run a Faust worker until SIGTERM/SIGINT."""
    import faust

    from app.security import client_kwargs
    from app.topology import ensure_topics_sync
    from config.settings import unknown_variables

    main = importlib.import_module("app.main")
    settings = main.settings
    for name in unknown_variables(os.environ):
        logger.warning("%s is not a setting of usage-moments (typo?)", name)
    ensure_topics_sync(settings, client_kwargs(settings))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    main.app.discover()
    worker = faust.Worker(main.app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish realistic plans and usage (with occasional bad records) to Kafka."""
    from app.simulate import run_simulation

    return run_simulation(args)


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the event topics and print each event."""
    from app.tail import run_tail

    return run_tail(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``moments`` argument parser."""
    parser = argparse.ArgumentParser(prog="moments", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a stream-processing worker").set_defaults(func=cmd_worker)
    sub.add_parser("check-config", help="validate settings and the plan catalog").set_defaults(
        func=cmd_check_config
    )
    sim = sub.add_parser("simulate", help="publish simulated plans and usage")
    sim.add_argument("--accounts", type=int, default=20, help="number of simulated accounts")
    sim.add_argument("--rate", type=float, default=50.0, help="usage records per second")
    sim.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: forever)")
    sim.add_argument("--bad-every", type=int, default=200, help="one bad record in this many")
    sim.add_argument("--seed", type=int, default=1, help="random seed")
    sim.set_defaults(func=cmd_simulate)
    tail = sub.add_parser("tail", help="print moment events as they arrive")
    tail.add_argument("kinds", nargs="*", help="threshold-near, threshold-hit, sudden-drop")
    tail.add_argument("--json", action="store_true", help="print JSON lines")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    tail.set_defaults(func=cmd_tail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moments`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("MOMENTS_LOG_LEVEL", "info").upper()
        if os.environ.get("MOMENTS_LOG_LEVEL", "info").lower()
        in ("debug", "info", "warning", "error", "critical")
        else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        return _fail(exc)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
