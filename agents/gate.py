"""Timer and rebalance hook that drive the plans gate (``app.gate``)."""

from __future__ import annotations

from typing import Any

from app.gate import TICK_S, monitor, on_assigned, plans_gate
from app.main import app, settings

plans_gate.configure(settings.topic_accounts, (settings.topic_usage, settings.topic_rekey))


@app.on_partitions_assigned.connect
async def gate_on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
    """Capture plans end offsets for every new assignment."""
    await on_assigned(plans_gate, sender, assigned)


@app.timer(TICK_S)
async def gate_tick() -> None:
    """Keep held usage partitions paused until their plans are read."""
    await monitor(plans_gate, app)
