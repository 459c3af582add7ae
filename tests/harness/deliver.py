"""A ``moments deliver`` process's environment and endpoints file, for the delivery tests
and the benchmark's ``deliver`` section."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from tests.harness.process import MOMENTS, WorkerProcess

DELIVER_COMMAND = (str(MOMENTS), "deliver")


def write_endpoints(path: Path, entries: Sequence[Mapping[str, Any]]) -> Path:
    """An endpoints file at ``path`` with one ``[[endpoints]]`` per entry (flat values)."""
    lines: list[str] = []
    for entry in entries:
        lines.append("[[endpoints]]")
        lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def deliver_env(
    *, bootstrap: str, app_id: str, endpoints_file: Path, port: int, **extra: str
) -> dict[str, str]:
    """This process's environment without its ``MOMENTS_*`` variables, plus the deliverer's:
    events under ``<app_id>.moments`` (two partitions), loopback web port ``port``, and
    ``extra`` (full variable names; the endpoints' secrets among them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env.update(
        MOMENTS_KAFKA_BOOTSTRAP=bootstrap,
        MOMENTS_APP_ID=app_id,
        MOMENTS_TOPIC_PREFIX=f"{app_id}.moments",
        MOMENTS_PARTITIONS="2",
        MOMENTS_WEB_HOST="127.0.0.1",
        MOMENTS_DELIVER_WEB_PORT=str(port),
        MOMENTS_ENDPOINTS_FILE=str(endpoints_file),
        MOMENTS_LOG_LEVEL="info",
    )
    env.update(extra)
    return env


def deliver_process(env: dict[str, str], log_path: Path) -> WorkerProcess:
    """The deliverer as a harness process (ready = ``/readyz`` 200 on its web port)."""
    return WorkerProcess(
        env=env,
        port=int(env["MOMENTS_DELIVER_WEB_PORT"]),
        log_path=log_path,
        command=list(DELIVER_COMMAND),
    )
