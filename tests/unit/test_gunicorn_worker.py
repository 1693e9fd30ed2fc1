"""The connection board behind BalancedThreadWorker: who counts as a live sibling."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app import gunicorn_worker
from app.gunicorn_worker import BalancedThreadWorker, ConnectionBoard


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Live process ids to stand for workers (a slot whose process is alive stays taken)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(4)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_the_fewest_connections_elsewhere_leaves_out_this_worker(pids: list[int]) -> None:
    board = ConnectionBoard(slots=4)
    mine, other, third = (board.claim(pid) for pid in pids[:3])
    assert (mine, other, third) == (0, 1, 2)
    for slot, count in ((mine, 3), (other, 7), (third, 5)):
        board.publish(slot, count)
        board.beat(slot)
    assert board.fewest_elsewhere(mine) == 5
    assert board.fewest_elsewhere(third) == 3


def test_a_worker_that_has_not_started_its_loop_or_is_stopping_is_not_compared(
    pids: list[int],
) -> None:
    board = ConnectionBoard(slots=4)
    mine, booting, stopping = (board.claim(pid) for pid in pids[:3])
    board.publish(mine, 4)
    board.beat(mine)
    board.publish(booting, 0)  # claimed, app still loading: no beat yet
    board.publish(stopping, 1)
    board.beat(stopping)
    board.withdraw(stopping)  # SIGTERM: it no longer accepts
    assert board.fewest_elsewhere(mine) is None


def test_a_silent_worker_stops_counting_after_the_stale_time(
    monkeypatch: pytest.MonkeyPatch, pids: list[int]
) -> None:
    board = ConnectionBoard(slots=2)
    mine, hung = board.claim(pids[0]), board.claim(pids[1])
    board.beat(hung)
    assert board.fewest_elsewhere(mine) == 0
    now = gunicorn_worker.time.monotonic()
    monkeypatch.setattr(
        gunicorn_worker.time, "monotonic", lambda: now + gunicorn_worker.STALE_SECONDS + 0.1
    )
    assert board.fewest_elsewhere(mine) is None


def test_a_released_or_dead_workers_slot_is_claimed_again(pids: list[int]) -> None:
    board = ConnectionBoard(slots=2)
    first = board.claim(pids[0])
    dying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    second = board.claim(dying.pid)
    assert (first, second) == (0, 1)
    assert board.claim(pids[1]) is None  # full: both owners alive, one still booting
    board.release(first)
    assert board.claim(pids[1]) == first
    dying.kill()
    dying.wait()
    # A killed worker's slot: its pid is gone and it has been silent (here: never beat).
    assert board.claim(pids[2]) == second
    assert board.claim(pids[3]) is None


def test_the_board_is_made_in_the_master_once() -> None:
    BalancedThreadWorker.board = None
    try:
        BalancedThreadWorker.setup()
        board = BalancedThreadWorker.board
        BalancedThreadWorker.setup()  # gunicorn loads the class again on reload
        assert BalancedThreadWorker.board is board
        assert board is not None and board.created_by == os.getpid()
    finally:
        BalancedThreadWorker.board = None
