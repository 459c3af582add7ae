"""Timer and rebalance hook that drive the plans gate (``app.gate``)."""

from __future__ import annotations

from typing import Any

from app.commits import commit_guard
from app.gate import TICK_S, monitor, on_assigned, plans_gate
from app.main import app, metrics, settings

plans_gate.configure(settings.topic_accounts, (settings.topic_usage, settings.topic_rekey))


@app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types receivers as sync-or-awaitable only
async def gate_on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    """Hold usage of every new assignment until its plans are read."""
    metrics.rebalances.inc()
    commit_guard.install(sender.consumer)
    await on_assigned(plans_gate, sender, args[0])


@app.timer(TICK_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
async def gate_tick() -> None:
    """Keep held usage partitions paused until their plans are read."""
    await monitor(plans_gate, app)
