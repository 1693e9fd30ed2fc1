"""The in-process drainer for background jobs (webhook processing): held while requests
keep enqueueing, then run one by one, each once, in order; never lost to a failing job."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import jobs
from app.jobs import JobRunner


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Two throwaway tasks: `t.bg` (background) and `t.pool`; calls are recorded."""
    calls: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def record(name: str) -> Callable[[Any], None]:
        def task(arg: Any) -> None:
            if arg == "boom":
                raise RuntimeError("boom")
            with lock:
                calls.append((name, arg))

        return task

    monkeypatch.setitem(jobs.TASKS, "t.bg", record("t.bg"))
    monkeypatch.setitem(jobs.TASKS, "t.pool", record("t.pool"))
    monkeypatch.setattr(jobs, "BACKGROUND", {"t.bg"})
    yield calls


def runner(**config: Any) -> JobRunner:
    app = Flask(__name__)
    app.config.update(config)
    return JobRunner(app)


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_background_jobs_wait_while_requests_keep_coming_then_run_once_in_order(
    ran: list[tuple[str, Any]],
) -> None:
    # A quiet gap of an hour never comes: the jobs are held until someone asks for them.
    r = runner(JOBS_BACKGROUND_QUIET_SECONDS=3600)
    try:
        for n in (1, 2, 3, 2, 1):  # the same job twice is run once
            r.submit("t.bg", (n,))
        time.sleep(0.2)
        assert ran == []
        assert r.drainer.pending == 3
        r.wait_idle()  # tests and shutdown: run everything now
        assert ran == [("t.bg", 1), ("t.bg", 2), ("t.bg", 3)]
    finally:
        r.shutdown()


def test_background_jobs_run_by_themselves_once_enqueueing_pauses(
    ran: list[tuple[str, Any]],
) -> None:
    r = runner(JOBS_BACKGROUND_QUIET_SECONDS=0.01, JOBS_BACKGROUND_BATCH=2)
    try:
        for n in range(5):
            r.submit("t.bg", (n,))
        assert until(lambda: len(ran) == 5)
        assert ran == [("t.bg", n) for n in range(5)]
    finally:
        r.shutdown()


def test_a_failing_job_does_not_stop_the_others(ran: list[tuple[str, Any]]) -> None:
    r = runner()
    try:
        for arg in ("a", "boom", "b"):
            r.submit("t.bg", (arg,))
        r.wait_idle()
        assert ran == [("t.bg", "a"), ("t.bg", "b")]
    finally:
        r.shutdown()


def test_other_jobs_still_go_to_the_pool_and_eager_runs_inline(ran: list[tuple[str, Any]]) -> None:
    r = runner(JOBS_BACKGROUND_QUIET_SECONDS=3600)
    try:
        r.submit("t.bg", ("held",))
        r.submit("t.pool", ("now",))
        assert until(lambda: ("t.pool", "now") in ran)
        assert ("t.bg", "held") not in ran
    finally:
        r.shutdown()  # runs what is still held
    assert ("t.bg", "held") in ran
    eager = runner(JOBS_EAGER=True)
    eager.submit("t.bg", ("inline",))
    assert ran[-1] == ("t.bg", "inline")


def test_the_thread_ends_when_idle_and_starts_again(
    ran: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs.Drainer, "LINGER", 0.05)
    r = runner(JOBS_BACKGROUND_QUIET_SECONDS=0.01)
    try:
        r.submit("t.bg", (1,))
        assert until(lambda: r.drainer._thread is None)
        assert ran == [("t.bg", 1)]
        r.submit("t.bg", (2,))
        r.wait_idle()
        assert ran == [("t.bg", 1), ("t.bg", 2)]
    finally:
        r.shutdown()


def test_jobs_after_a_shutdown_still_run(ran: list[tuple[str, Any]]) -> None:
    r = runner()
    r.submit("t.bg", (1,))
    r.shutdown()  # runs what is held, ends the thread
    assert ran == [("t.bg", 1)] and r.drainer._thread is None
    r.submit("t.bg", (2,))
    r.wait_idle()
    r.shutdown()
    assert ran == [("t.bg", 1), ("t.bg", 2)]


EXITING_PROCESS = """
import sys, time
from flask import Flask
from app import jobs
from app.jobs import JobRunner

done = open(sys.argv[1], "a")
def slow(n):
    time.sleep(0.02)
    done.write(f"{n}\\n")
    done.flush()
jobs.TASKS["t.slow"] = slow
jobs.BACKGROUND.add("t.slow")
app = Flask(__name__)
app.config.update(JOBS_EXIT_SECONDS=1, JOBS_BACKGROUND_QUIET_SECONDS=0)
runner = JobRunner(app)
for n in range(2000):
    runner.submit("t.slow", (n,))
time.sleep(0.2)
print("main thread done", flush=True)
"""


def test_an_exiting_process_runs_held_jobs_for_a_bounded_time_then_leaves_the_rest(
    tmp_path: Path,
) -> None:
    """2,000 held jobs of 20 ms would keep a stopped worker alive for 40 s; it stops after
    JOBS_EXIT_SECONDS and leaves the rest to the periodic sweeps."""
    record = tmp_path / "done.txt"
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", EXITING_PROCESS, str(record)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "main thread done" in out.stdout
    ran = record.read_text().split()
    assert ran == [str(n) for n in range(len(ran))]  # in order, none twice
    assert 10 < len(ran) < 2000
    assert elapsed < 15
    assert "background jobs left to the periodic sweeps" in out.stderr


def test_held_jobs_of_a_merge_task_run_as_one_with_their_ids_joined(
    ran: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """webhooks.process_batch: the groups the intake enqueued run as one batch (in order,
    each id once), up to MERGE_LIMIT ids a run; other jobs keep their turn."""
    monkeypatch.setattr(jobs, "BACKGROUND", {"t.bg", "t.many"})
    monkeypatch.setattr(jobs, "MERGE", {"t.many"})
    monkeypatch.setattr(jobs.Drainer, "MERGE_LIMIT", 5)
    runs: list[tuple[int, ...]] = []
    monkeypatch.setitem(jobs.TASKS, "t.many", lambda ids: runs.append(tuple(ids)))
    r = runner(JOBS_BACKGROUND_QUIET_SECONDS=3600, JOBS_BACKGROUND_BATCH=3)
    try:
        r.submit("t.many", ((1, 2),))
        r.submit("t.bg", ("between",))
        r.submit("t.many", ((3,),))
        r.submit("t.many", ((4, 5, 6),))  # beyond the batch of 3: joins while room is left
        r.submit("t.many", ((7,),))
        r.wait_idle()
        assert ran == [("t.bg", "between")]
        assert [i for run in runs for i in run] == [1, 2, 3, 4, 5, 6, 7]
        assert max(len(run) for run in runs) <= 6  # a run stops taking at the limit
        assert len(runs) < 4  # fewer runs than jobs
    finally:
        r.shutdown()


def test_enqueue_grouped_gives_one_job_per_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setitem(jobs.TASKS, "t.group", lambda ids: None)
    monkeypatch.setattr(jobs, "dispatch", lambda name, *args: sent.append((name, args)))
    jobs.begin_batch()
    jobs.enqueue_grouped("t.group", 3)
    jobs.enqueue("t.group", (9,))
    jobs.enqueue_grouped("t.group", 1)
    jobs.enqueue_grouped("t.group", 3)  # once
    jobs.flush_batch()
    assert sent == [("t.group", ((3, 1),)), ("t.group", ((9,),))]
    jobs.begin_batch()
    jobs.discard_batch()  # rolled back: nothing
    jobs.enqueue_grouped("t.group", 5)  # outside a transaction: now, alone
    assert sent[-1] == ("t.group", ((5,),))
