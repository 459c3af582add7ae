"""``moments status``: per worker of a running fleet, its partitions, lag, state size and
readiness, read from the workers' ``/status`` endpoints.

The fleet is discovered from the workers asked (each ``/status`` lists the URLs of the
group's members at the last assignment), so one ``--url`` is enough. Exit status 0 when
every worker answered and is ready, 1 otherwise (a worker unreachable, or not ready).
The rendering (:mod:`commands.status.render`) is pure; this module does the HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from commands.status.render import WorkerStatus, exit_code, render

HTTP_TIMEOUT_S = 5.0
#: At most this many workers are asked at once.
PARALLEL = 16


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
