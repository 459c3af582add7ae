"""``moments status``: discovery, table and exit status (commands.status), without HTTP."""

from __future__ import annotations

from typing import Any

from commands.status.fetch import collect
from commands.status.render import WorkerStatus, exit_code, render


def _body(
    url: str, *, ready: bool = True, fleet: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "url": url,
        "ready": ready,
        "checks": {"assigned": True, "tables_recovered": ready},
        "partitions": {"active": [0, 1], "standby": [2]},
        "lag_total": 7,
        "state_bytes_total": 3 * 1024 * 1024,
        "fleet": fleet or [url],
    }
    body.update(extra)
    return body


def test_the_fleet_is_discovered_from_one_worker() -> None:
    a, b = "http://a:6066", "http://b:6066"
    asked: list[str] = []

    def fetch(url: str) -> WorkerStatus:
        asked.append(url)
        return WorkerStatus(url, _body(url, fleet=[a, b]))

    statuses = collect([a + "/"], fetch)
    assert [s.url for s in statuses] == [a, b]
    assert sorted(asked) == [a, b]


def test_a_worker_reached_by_another_name_is_asked_once() -> None:
    def fetch(url: str) -> WorkerStatus:
        return WorkerStatus(url, _body("http://w1:6066", fleet=["http://w1:6066"]))

    statuses = collect(["http://127.0.0.1:6066"], fetch)
    assert len(statuses) == 1


def test_a_member_that_does_not_answer_is_down_and_fails_the_command() -> None:
    a, b = "http://a:6066", "http://b:6066"

    def fetch(url: str) -> WorkerStatus:
        if url == b:
            return WorkerStatus(url, None, "unreachable (Connection refused)")
        return WorkerStatus(url, _body(url, fleet=[a, b]))

    statuses = collect([a], fetch)
    table = render(statuses)
    assert "down" in table and "Connection refused" in table
    assert exit_code(statuses) == 1


def test_the_table_shows_partitions_lag_state_and_readiness() -> None:
    statuses = [
        WorkerStatus("http://a:6066", _body("http://a:6066")),
        WorkerStatus("http://b:6066", _body("http://b:6066", ready=False)),
    ]
    lines = render(statuses).splitlines()
    assert lines[0].split() == ["WORKER", "READY", "ACTIVE", "STANDBY", "LAG", "STATE", "DETAIL"]
    assert lines[1].split()[:7] == ["http://a:6066", "yes", "0,1", "2", "7", "3.0", "MiB"]
    assert "not tables_recovered" in lines[2]
    assert lines[3].split()[:6] == ["2", "workers", "1", "ready", "14", "6.0"]
    assert exit_code(statuses) == 1


def test_every_worker_ready_exits_zero_and_none_found_does_not() -> None:
    assert exit_code([WorkerStatus("http://a:1", _body("http://a:1"))]) == 0
    assert exit_code([]) == 1
