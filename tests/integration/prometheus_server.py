"""A real Prometheus server for integration tests: config, process and HTTP API.

The binary is Debian's (``scripts/ensure-prometheus`` prints it, installing the
package when run as root). It runs without the package's systemd unit: every path
and address is given on the command line, storage lives in the test's tmp dir, and
scrapes and rule evaluations happen every second so a test sees series, rates and
pending alerts within seconds.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENSURE_PROMETHEUS = ROOT / "scripts" / "ensure-prometheus"
#: Scrape and rule-evaluation interval: short, so rates and alerts move within the test.
INTERVAL = "1s"


def find_prometheus() -> str:
    """Path of a working Prometheus server; raises with the script's advice otherwise."""
    result = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(ENSURE_PROMETHEUS)], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/ensure-prometheus failed:\n{result.stderr}")
    return result.stdout.strip()


class PrometheusError(AssertionError):
    """Prometheus answered a query with an error (a bad expression, say)."""


@dataclass
class PrometheusServer:
    """One ``prometheus`` process scraping a static list of targets under one job."""

    binary: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def configure(self, *, job: str, targets: list[str], rule_files: list[Path]) -> Path:
        """Write prometheus.yml: one static job, the given rule files, 1 s intervals."""
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": "/metrics",
                    "scrape_timeout": INTERVAL,
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        path = self.workdir / "prometheus.yml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    def start(self) -> PrometheusServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - the binary ensure-prometheus printed
                [
                    self.binary,
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    "--storage.tsdb.retention.time=1h",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def ready(self, timeout: float = 30.0) -> PrometheusServer:
        """Wait for ``/-/ready``; fail at once if the process exits (a bad config)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.proc.returncode}:\n{self.log()}"
                )
            status, _ = await self._get("/-/ready")
            if status == 200:
                return self
            await asyncio.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {timeout}s:\n{self.log()}")

    async def _get(self, path: str) -> tuple[int, bytes]:
        def get() -> tuple[int, bytes]:
            try:
                with urllib.request.urlopen(self.url + path, timeout=10) as resp:  # noqa: S310
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return 0, b""

        return await asyncio.to_thread(get)

    async def api(self, path: str, **params: str) -> Any:
        """``data`` of an ``/api/v1`` answer; raises PrometheusError on an error answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = await self._get(f"/api/v1/{path}{query}")
        if status == 0:
            raise AssertionError(f"prometheus does not answer:\n{self.log()}")
        answer = orjson.loads(body)
        if answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: HTTP {status}, {answer}")
        return answer["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (raises if it is not a vector)."""
        data = await self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r} gave a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts."""
        alerts: list[dict[str, Any]] = (await self.api("alerts"))["alerts"]
        return alerts

    async def alerting_rules(self) -> list[dict[str, Any]]:
        """Every loaded alerting rule with its health and last evaluation error."""
        groups = (await self.api("rules", type="alert"))["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def value(sample: dict[str, Any]) -> float:
    """The float of one instant-vector sample (``NaN`` stays NaN)."""
    return float(sample["value"][1])


def finite(samples: list[dict[str, Any]]) -> list[float]:
    """The finite values of an instant vector: what a panel would actually draw."""
    return [v for v in map(value, samples) if math.isfinite(v)]
