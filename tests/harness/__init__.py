"""One process harness for the tests and the benchmarks (test-only, never shipped).

``tests/integration``, ``tests/faults``, ``tests/chaos``, ``scripts/bench.py`` and
``scripts/capacity.py`` start real ``moments worker`` processes and read them through
these modules:

- ``ports``: loopback ports for the workers and servers a run starts;
- ``process``: a worker's environment, its process (start, readiness, SIGTERM then
  SIGKILL) and HTTP on its web port;
- ``metrics``: a worker's ``/metrics`` page, parsed by prometheus_client; a series
  that is not there raises :class:`~tests.harness.metrics.MissingSeries`;
- ``meters``: CPU, RSS and disk figures of processes and directories, from /proc;
- ``kafka``: topic creation and read_committed readers.

``steps`` runs a partition's steps in-process instead (the real handlers on real RocksDB
stores, no Kafka), for ``tests/functional`` and ``scripts/profile_plans.py`` /
``scripts/profile_steps.py``.

It lives under ``tests/`` so the packaging (pyproject's package list, the Dockerfile's
COPY lines) never ships it; a script puts the repository root on ``sys.path`` first.
"""
