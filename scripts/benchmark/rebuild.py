"""Section ``rebuild``: a worker with an empty data dir restores the throughput run's
state from the changelogs; its account views must read as the original's did."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any, Final

from benchmark.admin import changelog_records, wait_group_empty
from benchmark.report import RatioKind, Report, mb, report_worker
from benchmark.throughput import OneRun
from benchmark.views import account_views, background_of, differences, wait_background_idle
from benchmark.workers import Worker
from benchmark.workload import Dataset

RECOVERY_LINE: Final = re.compile(r"(?i)restor|recover|rebuil|worker ready")
LOG_NOISE: Final = re.compile(
    r"^\+|Creating topic|Starting\.\.\.|Stopping\.\.\.|Highwater|offsets at"
)
"""Recovery-ish lines not worth showing (topic creation, service start/stop, tables)."""
LOG_TABLE_ROW: Final = re.compile(r"[│|]\s*(\S+)\s*[│|]\s*(\d+)\s*[│|]\s*(-?\d+)\s*[│|]")
"""A ``topic | partition | number`` row of Faust's recovery log tables."""


async def rebuild(
    args: argparse.Namespace, data: Dataset, previous: OneRun, report: Report
) -> None:
    """Section ``rebuild``: same app id, empty data dir; start -> /readyz 200."""
    prev = previous.worker
    w = Worker(
        args,
        data,
        prev.app_id,
        "exactly_once",
        "rebuilt worker",
        log_name=f"{prev.app_id}-rebuild",
    )
    figure = "rebuild from changelogs (start -> /readyz 200)"
    print(
        f"\n[rebuild] app id {prev.app_id} again, empty data dir, port {w.port}, log {w.log_path}"
        f"\n  previous worker: {prev.stop_text()}"
    )
    # A worker that was SIGKILLed stays in the group until its session expires; the new
    # one would wait for that in its join. Not part of the rebuild: wait it out first.
    waited = await wait_group_empty(args.bootstrap, prev.app_id, args.max_seconds)
    if waited > 1:
        print(f"  waited {waited:.1f}s for the previous worker to leave the group")
    views: dict[str, tuple[int, Any]] = {}
    idle_note = ""
    try:
        w.start()
        note = await w.wait_ready(w.started + args.max_seconds)
        if not note:
            print(f"  ready after {w.ready_s:.1f}s")
            if previous.views is not None and args.rebuild_early:
                views = await account_views(w, list(previous.views))
                idle_note = "views read at ready, without waiting for background work"
            elif previous.views is not None:
                # Work the original left unfinished, or a day or cut that became due since,
                # runs here now: wait for it as the original's views did.
                idle_note, _ = await wait_background_idle(
                    w, data.partitions, time.monotonic() + args.max_seconds, ticks_expected=False
                )
                views = await account_views(w, list(previous.views))
    finally:
        await w.stop()
        w.remove_state()
    records, offsets = await changelog_records(args.bootstrap, prev.app_id, args.max_seconds)
    restored = faust_restored(w.log_lines())
    print(
        f"  changelog topics of {prev.app_id}: {records:,} committed records"
        f" ({offsets:,} offsets incl. transaction markers)"
        + ("" if restored is None else f"; Faust's log: {restored:,} offsets to restore")
    )
    check = ""
    if previous.views is None:
        print("  state not compared: the original run did not count every record")
    elif views:
        # Why the two sides may legitimately differ: either worker's background work was not
        # idle when its views were read, or the rebuilt worker did work the original had not
        # (left unfinished by it, or a day or cut that became due between the two reads).
        bg = background_of(w.log_lines())
        caveats = [n for n in (previous.views_note, idle_note) if n]
        if bg.resumed:
            caveats.append("the rebuilt worker finished " + ", ".join(bg.resumed))
        if bg.ticked:
            caveats.append(
                "the rebuilt worker started work of a new day or cut: "
                + ", ".join(f"p{p} day {d} cut {c}" for p, (d, c) in sorted(bg.ticked.items()))
            )
        differ = [a for a, view in previous.views.items() if views.get(a) != view]
        if differ:
            check = f"WRONG STATE: {len(differ)}/{len(views)} sampled accounts differ"
            if caveats:
                check += " (not like with like: " + "; ".join(caveats) + ")"
            print(f"  {check}, from the original worker's /accounts views:")
            for account in differ:
                for line in differences(previous.views[account], views.get(account)):
                    print(f"    {account} {line}")
        else:
            print(f"  state check: {len(views)}/{len(views)} sampled /accounts views identical")
            for caveat in caveats:
                print(f"    (note: {caveat})")

    told = [
        line[:160]
        for line in w.log_path.read_text(errors="replace").splitlines()
        if RECOVERY_LINE.search(line) and not LOG_NOISE.search(line)
    ]
    for line in told[:2] + ["..."] + told[-4:] if len(told) > 6 else told:
        print(f"    {line}")
    report_worker(w)
    report.rss(w)
    if note:
        report.failed(6, figure, "- (none)", note)
        return
    extra = f"{records:,} changelog records"
    ready: tuple[RatioKind, float] = ("time", w.ready_s)
    if prev.killed:
        extra += "; previous worker was SIGKILLed"
    if check:
        report.add(6, figure, f"{w.ready_s:.1f} s", "- (none)", f"{check} ({extra})", ready)
        report.failures += 1
    else:
        verified = "state verified" if views else "state not verified"
        report.add(
            6, figure, f"{w.ready_s:.1f} s", "- (none)", f"(no target; {verified}; {extra})", ready
        )
    if w.state_bytes is not None:
        report.add(
            5,
            "state on disk after the rebuild",
            mb(w.state_bytes[0]),
            "- (none)",
            f"(no target; {mb(w.state_bytes[1])} apparent)",
        )


def faust_restored(lines: list[str]) -> int | None:
    """Offsets Faust said it would read to recover, from its highwater/start log tables.

    faust-streaming 0.15 logs "Highwater for active changelog partitions" and "active
    offsets at start of reading", each followed by a ``topic | partition | n`` table
    (a ditto mark repeats the topic). None when the log has no such tables.
    """
    tables: dict[str, dict[tuple[str, int], int]] = {"high": {}, "start": {}}
    current: dict[tuple[str, int], int] | None = None
    topic = ""
    for line in lines:
        lowered = line.lower()
        if "highwater for active changelog" in lowered:
            current, topic = tables["high"], ""
        elif "active offsets at start of reading" in lowered:
            current, topic = tables["start"], ""
        elif current is not None and line[:1] in "|+│┌├└":
            if match := LOG_TABLE_ROW.search(line):
                name, partition, number = match.groups()
                topic = topic if name == "〃" else name
                current[topic, int(partition)] = int(number)
        else:
            current = None
    if not tables["high"]:
        return None
    return sum(max(0, high - tables["start"].get(tp, -1)) for tp, high in tables["high"].items())
