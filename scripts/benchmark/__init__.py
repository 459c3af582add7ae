"""The modules of ``scripts/bench.py`` (and of ``scripts/capacity.py``), one job each.

- ``workload``: accounts, plans and usage records, and their publication;
- ``admin``: Kafka admin reads (partitions, group members and offsets, changelogs);
- ``workers``: the bench's workers on the shared process harness (``tests/harness``),
  and the measured windows (records counted, CPU of everyone);
- ``report``: what is printed, and the final table against the targets;
- ``views``: background work from a worker's log, account views and their differences;
- one module per section: ``throughput`` (with ``baseline``), ``rebuild``,
  ``scaling``, ``latency``, ``plans``.
"""

import sys
from pathlib import Path

# The harness is test-only code under tests/ (never shipped): the scripts run from a
# checkout, so its root goes on the import path.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
