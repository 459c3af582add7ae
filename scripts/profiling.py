"""What the step profilers (``scripts/profile_plans.py``, ``scripts/profile_steps.py``) share:
the process set up as a worker's, the fingerprint of what their steps produced, and the
cProfile report of one more run.

The steps themselves run on :mod:`tests.harness.steps` (shared with the functional tests).
"""

from __future__ import annotations

import cProfile
import gc
import logging
import pstats
from collections.abc import Callable
from typing import IO, Any

from engine.step import Messages
from state.store import PartitionStore, StoreOptions
from tables.registry import TABLE_COLUMNS, table_specs


def worker_store_options() -> StoreOptions:
    """RocksDB options as a worker's at its defaults (commands/worker/wiring.py): 4 MB
    memtables, and the probed tables' memtable bloom filters."""
    probed = [spec.name for spec in table_specs(1, 1) if spec.probed]
    return StoreOptions(cache_mb=64, write_buffer_mb=4, probed=probed)


def as_a_worker() -> None:
    """The garbage collector set as the worker sets it (commands/worker/run.py: what is
    allocated so far frozen, few collections), and warnings (one line per record left out)
    not logged."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    logging.disable(logging.WARNING)


def fingerprint(digest: Any, messages: Messages, dump: IO[str] | None = None) -> int:
    """Add a step's ``messages`` to ``digest`` (``hashlib.sha256()``), targets in a fixed
    order, the dedup segments' random keys left out; write each to ``dump`` if given.
    Returns how many there were."""
    n = 0
    for target in sorted(messages, key=repr):
        for message in messages[target]:
            shown = (None, *message[1:]) if "dedup" in target[0] else message
            line = repr((target, shown))
            digest.update(line.encode())
            if dump is not None:
                dump.write(line + "\n")
            n += 1
    return n


def fingerprint_store(digest: Any, store: PartitionStore, dump: IO[str] | None = None) -> None:
    """Add every stored value to ``digest`` but the dedup tables' (keyed by hashes whose
    segments have random keys); write each to ``dump`` if given."""
    for column in TABLE_COLUMNS:
        if column.startswith("dedup"):
            continue
        for key, value in store.items(column):
            line = repr((column, key, value))
            digest.update(line.encode())
            if dump is not None:
                dump.write(line + "\n")


def cprofile_report(run: Callable[[cProfile.Profile], object], top: int) -> None:
    """Run once more under cProfile (``run`` enables and disables it around what it times)
    and print the ``top`` functions by their own time."""
    profile = cProfile.Profile()
    run(profile)
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)
