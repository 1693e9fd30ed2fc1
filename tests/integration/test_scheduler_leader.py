"""Periodic tasks run once per interval across gunicorn workers (issue 23 item 6): without
a broker each worker ran its own scheduler, so every task ran once per worker. One leader
now (a PostgreSQL advisory lock, a lease row on SQLite); killed, another takes over."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask

from tests.integration.workers import workers

INTERVAL = 2  # seconds between checkout expiry runs
RUN = "periodic task checkouts.expire dispatched"


def _since(log: Path, offset: int) -> str:
    with log.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _wait_for(log: Path, pattern: str, offset: int, timeout: float) -> re.Match[str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, _since(log, offset))
        if found:
            return found
        time.sleep(0.1)
    return None


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_one_leader_runs_each_task_once_per_interval_and_is_replaced_when_killed(
    make_app: Callable[..., Flask], database_url: str, tmp_path: Path
) -> None:
    make_app()  # the test's database, migrated
    log = tmp_path / "gunicorn.log"
    settings = {
        "EXPIRE_INTERVAL_SECONDS": str(INTERVAL),
        "SCHEDULER_LEASE_SECONDS": str(INTERVAL),
        "ACCESS_LOG": "false",
    }
    with workers(database_url, tmp_path, **settings) as (base, _):
        # A scheduler starts with its worker's first request: reach several workers.
        deadline = time.monotonic() + 15
        started: set[str] = set()
        while len(started) < 3 and time.monotonic() < deadline:
            for _ in range(10):
                with requests.Session() as fresh:  # a new connection each time
                    fresh.get(f"{base}/healthz", timeout=5)
            started = set(re.findall(r"scheduler: started in pid (\d+)", log.read_text()))
        assert len(started) >= 2, log.read_text()[-3000:]
        leader = _wait_for(log, r"scheduler: pid (\d+) leads", 0, 5)
        assert leader, log.read_text()[-3000:]

        # Each task once per interval, whatever the number of workers.
        mark = log.stat().st_size
        time.sleep(3 * INTERVAL)
        runs = _since(log, mark).count(RUN)
        assert 2 <= runs <= 4, (runs, len(started))
        leaders = set(re.findall(r"scheduler: pid (\d+) leads", log.read_text()))
        assert leaders == {leader.group(1)}

        # The leader dies: another worker leads within an interval (and a tick).
        mark = log.stat().st_size
        os.kill(int(leader.group(1)), signal.SIGKILL)
        killed_at = time.monotonic()
        successor = _wait_for(log, r"scheduler: pid (\d+) leads", mark, INTERVAL + 2)
        assert successor, _since(log, mark)[-3000:]
        took = time.monotonic() - killed_at
        assert successor.group(1) != leader.group(1)
        assert took <= INTERVAL + 1.5, took
        mark = log.stat().st_size
        time.sleep(2 * INTERVAL + 0.5)
        runs = _since(log, mark).count(RUN)
        assert 1 <= runs <= 3, runs
