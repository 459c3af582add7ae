"""``moments status``: per worker of a running fleet, its partitions, lag, state size and
readiness, read from the workers' ``/status`` endpoints.

The fleet is discovered from the workers asked (each ``/status`` lists the URLs of the
group's members at the last assignment), so one ``--url`` is enough. Exit status 0 when
every worker answered and is ready, 1 otherwise (a worker unreachable, or not ready).
The rendering (:func:`render`, :func:`exit_code`) is pure; :func:`collect` does the HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

HTTP_TIMEOUT_S = 5.0
#: At most this many workers are asked at once.
PARALLEL = 16


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker's ``/status`` answer, or why there is none."""

    url: str
    body: dict[str, Any] | None
    error: str | None = None

    @property
    def ready(self) -> bool:
        """Answered and ready."""
        return self.body is not None and bool(self.body.get("ready"))


def fetch_status(url: str, timeout_s: float = HTTP_TIMEOUT_S) -> WorkerStatus:
    """GET ``url``/status; an unreachable worker or a bad answer gives an error, not a raise."""
    target = url.rstrip("/") + "/status"
    if not target.startswith(("http://", "https://")):
        return WorkerStatus(url, None, "not an http(s) URL")
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as resp:  # noqa: S310 - scheme checked above
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return WorkerStatus(url, None, f"HTTP {err.code}")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        return WorkerStatus(url, None, f"unreachable ({reason})")
    except ValueError:
        return WorkerStatus(url, None, "answered something other than JSON")
    if not isinstance(body, dict):
        return WorkerStatus(url, None, "answered something other than a JSON object")
    return WorkerStatus(url, body)


def collect(
    urls: Iterable[str], fetch: Callable[[str], WorkerStatus] = fetch_status
) -> list[WorkerStatus]:
    """Status of ``urls`` and of every worker their answers name as fleet members."""
    seen: dict[str, WorkerStatus] = {}
    pending = sorted({u.rstrip("/") for u in urls})
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        while pending:
            for status in pool.map(fetch, pending):
                seen[status.url] = status
            found = {
                str(u).rstrip("/")
                for s in seen.values()
                if s.body is not None
                for u in s.body.get("fleet", ())
            }
            # A worker reached by another name (--url localhost vs its advertised host)
            # names itself in "url": not asked twice.
            known = set(seen) | {
                str(s.body["url"]) for s in seen.values() if s.body and "url" in s.body
            }
            pending = sorted(found - known)
    by_url: dict[str, WorkerStatus] = {}
    for status in seen.values():
        name = str(status.body.get("url", status.url)) if status.body else status.url
        by_url.setdefault(name, status)
    return [by_url[u] for u in sorted(by_url)]


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def _partitions(values: Sequence[int]) -> str:
    return ",".join(str(p) for p in values) or "-"


def render(statuses: Sequence[WorkerStatus]) -> str:
    """A table: one line per worker, then one line of totals."""
    header = ("WORKER", "READY", "ACTIVE", "STANDBY", "LAG", "STATE", "DETAIL")
    rows: list[tuple[str, ...]] = []
    lag_total = state_total = 0
    for s in statuses:
        if s.body is None:
            rows.append((s.url, "down", "-", "-", "-", "-", s.error or ""))
            continue
        body = s.body
        parts = body.get("partitions", {})
        lag = int(body.get("lag_total", 0))
        state = int(body.get("state_bytes_total", 0))
        lag_total += lag
        state_total += state
        failing = [name for name, ok in sorted(body.get("checks", {}).items()) if not ok]
        rows.append(
            (
                str(body.get("url", s.url)),
                "yes" if s.ready else "no",
                _partitions(parts.get("active", [])),
                _partitions(parts.get("standby", [])),
                str(lag),
                _size(state),
                "not " + ", not ".join(failing) if failing else "",
            )
        )
    ready = sum(1 for s in statuses if s.ready)
    rows.append(
        (
            f"{len(statuses)} workers",
            f"{ready} ready",
            "",
            "",
            str(lag_total),
            _size(state_total),
            "",
        )
    )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in (header, *rows)
    ]
    return "\n".join(lines)


def exit_code(statuses: Sequence[WorkerStatus]) -> int:
    """0 when every worker answered and is ready, 1 otherwise (or when none was found)."""
    return 0 if statuses and all(s.ready for s in statuses) else 1


def run_status(args: argparse.Namespace) -> int:
    """The ``moments status`` command."""
    urls: list[str] = list(args.url or [])
    if not urls:
        from config.settings import load_settings

        urls = [f"http://127.0.0.1:{load_settings(os.environ).web_port}"]
    statuses = collect(urls)
    if args.json:
        print(json.dumps([{"url": s.url, "status": s.body, "error": s.error} for s in statuses]))
    else:
        print(render(statuses))
    return exit_code(statuses)
