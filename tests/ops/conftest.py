"""Fixtures of the deployment-file tests: the offline validators, installed on demand."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENSURE = ROOT / "scripts" / "ensure-deploy-tools"


@pytest.fixture(scope="session")
def deploy_tools() -> Path:
    """The tools dir of scripts/ensure-deploy-tools (kubeconform and every schema).

    Required, not optional: the script installs what is missing (Go module proxy and
    the [dev] extras); when it cannot, the test fails with its message.
    """
    proc = subprocess.run([str(ENSURE)], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/ensure-deploy-tools failed:\n{proc.stderr}", pytrace=False)
    return Path(proc.stdout.strip())
