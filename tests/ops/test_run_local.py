"""``make run`` (scripts/run-local) stopped with Ctrl-C exits 0 after a clean stop.

Issue 16, item 11: Ctrl-C, as the README says to stop it, ended with make's "Error 130"
(or "Error 1") although every part had stopped cleanly. The script runs here against a
fake ``moments`` (simulator, tail and a worker answering ``/readyz``), in its own process
group, and gets SIGINT as a terminal's Ctrl-C sends it: to the whole group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
#: Only bounds a broken run; every wait below is for an event (a line, an exit).
LIMIT_S = 120

FAKE_MOMENTS = """\
#!{python}
import http.server, os, signal, sys, threading

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
command = sys.argv[1]
if command == "simulate":
    print("history published", flush=True)
elif command == "worker":
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{{}}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["MOMENTS_WEB_PORT"])), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
stop.wait()
sys.exit(int(os.environ.get("FAKE_STOP_STATUS_" + command, "0")))
"""


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A copy of scripts/run-local beside a fake ``.venv/bin/moments``."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "run-local", tmp_path / "scripts" / "run-local")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    moments = bin_dir / "moments"
    moments.write_text(FAKE_MOMENTS.format(python=sys.executable))
    moments.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    yield tmp_path


def _run_then_ctrl_c(tree: Path, **extra: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOMENTS_")}
    env.update(
        MOMENTS_KAFKA_BOOTSTRAP="127.0.0.1:1",  # set: run-local starts no broker
        MOMENTS_WEB_PORT=str(free_port()),
        MOMENTS_DATA_DIR=str(tree / "data"),
        RUN_LOCAL_READY_TIMEOUT="60",
        **extra,
    )

    def as_a_terminal_would() -> None:
        os.setpgrp()  # a job of its own, which Ctrl-C signals as a whole
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(  # noqa: S603 - our own script
        [str(tree / "scripts" / "run-local")],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_a_terminal_would,  # noqa: PLW1509 - no threads started here
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "usage-moments is running locally" in line:
                os.killpg(proc.pid, signal.SIGINT)
                break
        else:
            raise AssertionError("run-local never said it was running:\n" + "".join(seen))
        rest, _ = proc.communicate(timeout=LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, "".join(seen) + rest


def test_ctrl_c_after_a_clean_stop_exits_0(tree: Path) -> None:
    status, output = _run_then_ctrl_c(tree)
    assert status == 0, output
    assert "run-local: stopped" in output, output


def test_ctrl_c_when_a_part_fails_to_stop_cleanly_exits_1(tree: Path) -> None:
    status, output = _run_then_ctrl_c(tree, FAKE_STOP_STATUS_worker="3")
    assert status == 1, output
    assert "worker exited with status 3 while stopping" in output, output
