"""Liveness and readiness of the worker, for /readyz and the moments_ready gauge."""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.tables.manager import TableManager

from app.gate import plans_gate


def readiness(app: faust.App) -> dict[str, Any]:
    """Whether this worker is assigned, recovered and caught up on plans, and why not."""
    recovery = cast(TableManager, app.tables).recovery
    checks = {
        "tables_recovered": bool(recovery.completed.is_set()),
        "not_rebalancing": not app.rebalancing,
        "plans_caught_up": plans_gate.all_caught_up(),
    }
    return {"ready": all(checks.values()), "checks": checks}
