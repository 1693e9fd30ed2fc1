"""Background jobs: enqueue after commit, run in-process or on Celery.

`enqueue("name", *args)` inside a unit of work is held until the transaction commits,
so a job never sees data that was rolled back. With no broker configured (the
embedded default) jobs run on a small in-process thread pool; with JOBS_EAGER they run
inline right after the commit (tests). Tasks must be idempotent: they may run twice.

Tasks registered with `background=True` (webhook processing) run, in-process, on one
drainer thread instead of the pool: in order, one job at a time, after the burst that
enqueued them has been answered (see Drainer). With Celery they are ordinary tasks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flask import Flask

from app.proxies import real_app

log = logging.getLogger(__name__)

TASKS: dict[str, Callable[..., Any]] = {}
BACKGROUND: set[str] = set()
# Background tasks taking one sequence of ids: in-process, the drainer runs the jobs of
# such a task that it holds as one call with their ids joined (webhooks.process_batch).
MERGE: set[str] = set()
_local = threading.local()
_build_lock = threading.Lock()


def task(
    name: str, *, background: bool = False, merge: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a job under a stable name. `background=True`: in-process,
    it runs on the drainer thread, after the requests that enqueued it (see Drainer).
    `merge=True` (background tasks whose one argument is a sequence of ids): the drainer
    may run several such jobs as one, with their ids joined (up to Drainer.MERGE_LIMIT)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = fn
        if background:
            BACKGROUND.add(name)
            if merge:
                MERGE.add(name)
        return fn

    return register


def _batches() -> list[list[tuple[str, tuple[Any, ...]]]]:
    if not hasattr(_local, "batches"):
        _local.batches = []
    batches: list[list[tuple[str, tuple[Any, ...]]]] = _local.batches
    return batches


def begin_batch() -> None:
    _batches().append([])


def discard_batch() -> None:
    if _batches():
        _batches().pop()


class _Group(list[Any]):
    """The growing argument of a job enqueued with enqueue_grouped()."""


def flush_batch() -> None:
    batches = _batches()
    if not batches:
        return
    pending = batches.pop()
    for name, args in pending:
        if batches:  # nested unit of work: hand over to the outer one
            if len(args) == 1 and isinstance(args[0], _Group):
                for item in args[0]:
                    enqueue_grouped(name, item)
            else:
                batches[-1].append((name, args))
        else:
            dispatch(name, *(tuple(a) if isinstance(a, _Group) else a for a in args))


def enqueue(name: str, *args: Any) -> None:
    """Run job `name` after the current transaction commits (or now, outside one)."""
    if name not in TASKS:
        raise KeyError(f"unknown job {name!r}")
    batches = _batches()
    if batches:
        batches[-1].append((name, args))
    else:
        dispatch(name, *args)


def enqueue_once(name: str, *args: Any) -> None:
    """enqueue(), unless the same job with the same arguments already waits for this
    transaction's commit (the outbox relay: one run takes every row written)."""
    batches = _batches()
    if batches and (name, args) in batches[-1]:
        return
    enqueue(name, *args)


def enqueue_grouped(name: str, item: Any) -> None:
    """Add `item` to the one job `name` that runs after this transaction's commit with
    every item added so far, as one sequence (the receipts of the orders a batch of
    webhook events paid: one job, one transaction for all of them). Outside a
    transaction, a job for this item alone."""
    if name not in TASKS:
        raise KeyError(f"unknown job {name!r}")
    batches = _batches()
    if not batches:
        dispatch(name, (item,))
        return
    for queued, args in batches[-1]:
        if queued == name and len(args) == 1 and isinstance(args[0], _Group):
            if item not in args[0]:
                args[0].append(item)
            return
    batches[-1].append((name, (_Group([item]),)))


def dispatch(name: str, *args: Any) -> None:
    """Send a job to Celery when a broker is configured, else to the in-process runner."""
    app = real_app()
    if app.config.get("CELERY_BROKER_URL") and not app.config.get("JOBS_EAGER"):
        try:
            get_celery(app).send_task(name, args=list(args))
        except Exception:
            # The change is committed; the periodic sweeps (webhook retries, receipts,
            # reconcile) pick up what this job would have done.
            log.exception("could not send job %s to the broker", name)
        return
    runner: JobRunner = app.extensions["kassa_jobs"]
    runner.submit(name, args)


def get_celery(app: Flask) -> Any:
    """The app's Celery instance, built on first use (only when a broker is set)."""
    celery = app.extensions.get("kassa_celery")
    if celery is None:
        from app.jobs.celery_app import make_celery

        with _build_lock:
            celery = app.extensions.get("kassa_celery") or make_celery(app)
    return celery


class JobRunner:
    """In-process runner for the embedded default (no broker)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.eager = bool(app.config.get("JOBS_EAGER"))
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._futures: set[Future[Any]] = set()
        self.drainer = Drainer(self)

    def submit(self, name: str, args: tuple[Any, ...]) -> None:
        if self.eager:
            self.run(name, args)
            return
        if name in BACKGROUND:
            self.drainer.submit(name, args)
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kassa-job")
            future = self._executor.submit(self.run_in_context, name, args)
            self._futures.add(future)
            future.add_done_callback(self._futures.discard)

    def run_in_context(self, name: str, args: tuple[Any, ...]) -> None:
        with self.app.app_context():
            self.run(name, args)

    def run(self, name: str, args: tuple[Any, ...]) -> None:
        try:
            TASKS[name](*args)
        except Exception:
            # The task's own bookkeeping (attempts, last_error) records failures; the
            # periodic reconcile picks up anything left behind.
            log.exception("job %s failed", name)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until queued jobs finish (tests and shutdown)."""
        import concurrent.futures

        deadline = time.monotonic() + timeout
        while True:
            # Pool jobs may enqueue background ones and the other way round.
            with self._lock:
                futures = list(self._futures)
            concurrent.futures.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
            drained = self.drainer.wait_idle(max(0.0, deadline - time.monotonic()))
            with self._lock:
                pool_idle = not self._futures
            if (drained and pool_idle) or time.monotonic() >= deadline:
                return

    def shutdown(self) -> None:
        self.drainer.stop()
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


class Drainer:
    """Runs background jobs (webhook processing) on one thread, after intake.

    Acknowledging a webhook only needs its row committed; applying it can wait a little.
    The drainer holds background jobs (deduplicated, in order) until enqueueing has been
    quiet for `JOBS_BACKGROUND_QUIET_SECONDS` (a burst has been answered), then runs them
    one by one, each as its own job (its own transaction). While enqueueing goes on without
    a pause it still runs them, in batches of `JOBS_BACKGROUND_BATCH`, taking at most
    `JOBS_BACKGROUND_SHARE` of the time, so processing is never starved and never takes the
    CPU from the requests. The thread exits when it has had nothing to do for a while and
    starts again on the next job. Jobs still held when the process dies are found by the
    periodic sweeps (webhooks.retry_due picks up received events after two minutes).

    When the process exits (a worker restarted or stopped), the thread goes on running what
    it holds for at most `JOBS_EXIT_SECONDS` (default 10, inside gunicorn's graceful timeout)
    and leaves the rest to those sweeps: a backlog of thousands must not keep a stopped
    worker alive until it is killed.
    """

    LINGER = 5.0  # seconds an idle drainer thread stays before exiting
    MERGE_LIMIT = 100  # ids in one merged run of a `merge=True` task

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        config = runner.app.config
        self.quiet = float(config.get("JOBS_BACKGROUND_QUIET_SECONDS", 0.02))
        self.share = min(1.0, max(0.01, float(config.get("JOBS_BACKGROUND_SHARE", 0.05))))
        self.batch = max(1, int(config.get("JOBS_BACKGROUND_BATCH", 20)))
        self.exit_seconds = float(config.get("JOBS_EXIT_SECONDS", 10.0))
        self._exit_by: float | None = None  # set once the interpreter is seen exiting
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, tuple[Any, ...]], None] = {}
        self._last_submit = 0.0
        self._thread: threading.Thread | None = None
        self._running = 0  # jobs taken but not finished
        self._hurry = 0  # waiters that want everything run now
        self._stopping = False
        self._resume_at = 0.0  # while requests keep coming, run again from then

    def submit(self, name: str, args: tuple[Any, ...]) -> None:
        with self._cond:
            self._pending[(name, args)] = None
            self._last_submit = time.monotonic()
            if self._thread is None and not self._stopping:
                # Not a daemon: at exit, what it holds is still run (like the pool's jobs).
                self._thread = threading.Thread(target=self._loop, name="kassa-drainer")
                self._thread.start()
            elif len(self._pending) == 1:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def wait_idle(self, timeout: float) -> bool:
        """Run everything held now and wait for it; True when nothing is left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._hurry += 1
            self._cond.notify_all()
            try:
                while self._pending or self._running:
                    left = deadline - time.monotonic()
                    if left <= 0 or (self._thread is None and self._pending):
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._hurry -= 1

    def stop(self, timeout: float = 30.0) -> None:
        self.wait_idle(timeout)
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            # Like the pool after shutdown(): a later job starts a new thread.
            self._stopping = False

    def _take(self) -> list[tuple[str, tuple[Any, ...]]] | None:
        """Wait for work and for the moment to run it; None when the thread should end."""
        with self._cond:
            idle_since = time.monotonic()
            while not self._pending:
                if (
                    self._stopping
                    or time.monotonic() - idle_since >= self.LINGER
                    or not threading.main_thread().is_alive()
                ):  # interpreter exiting
                    self._thread = None
                    self._cond.notify_all()
                    return None
                self._cond.wait(0.5)
            # Hold back while requests keep enqueueing, up to the pause the share asks for.
            while not self._hurry and not self._stopping:
                now = time.monotonic()
                quiet_in = self._last_submit + self.quiet - now
                pause_in = self._resume_at - now
                if quiet_in <= 0 or pause_in <= 0:
                    break
                self._cond.wait(min(quiet_in, pause_in))
            if self._past_exit_deadline():
                log.warning(
                    "process exiting: %d background jobs left to the periodic sweeps",
                    len(self._pending),
                )
                self._pending.clear()
                self._thread = None
                self._cond.notify_all()
                return None
            taken = []
            for key in self._pending:
                taken.append(key)
                if len(taken) >= self.batch:
                    break
            for key in taken:
                del self._pending[key]
            jobs = self._merged(taken)
            self._running = len(jobs)
            return jobs

    def _merged(
        self, taken: list[tuple[str, tuple[Any, ...]]]
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """The jobs taken, with those of a `merge=True` task joined into one run each (in
        the order of their first job), up to MERGE_LIMIT ids a run; the last run of a task
        also takes its held jobs beyond the batch, so one run applies many."""
        jobs: list[tuple[str, tuple[Any, ...] | list[Any]]] = []
        runs: dict[str, list[Any]] = {}
        for name, args in taken:
            if name not in MERGE or len(args) != 1:
                jobs.append((name, args))
                continue
            ids = runs.get(name)
            if ids is None or len(ids) >= self.MERGE_LIMIT:
                ids = runs[name] = []
                jobs.append((name, ids))
            ids.extend(args[0])
        for name, ids in runs.items():
            for key in [k for k in self._pending if k[0] == name and len(k[1]) == 1]:
                if len(ids) >= self.MERGE_LIMIT:
                    break
                ids.extend(key[1][0])
                del self._pending[key]
        return [(n, (tuple(a),) if isinstance(a, list) else a) for n, a in jobs]

    def _past_exit_deadline(self) -> bool:
        if threading.main_thread().is_alive():
            return False
        now = time.monotonic()
        if self._exit_by is None:
            self._exit_by = now + self.exit_seconds
        return now >= self._exit_by

    def _loop(self) -> None:
        self._resume_at = time.monotonic() + self.quiet
        while True:
            jobs = self._take()
            if jobs is None:
                return
            started = time.monotonic()
            for name, args in jobs:
                try:
                    self.runner.run_in_context(name, args)  # each in its own app context
                except Exception:  # the drainer must outlive any one failure
                    log.exception("job %s failed", name)
                finally:
                    with self._cond:
                        self._running -= 1
                        if not self._running:
                            self._cond.notify_all()
            now = time.monotonic()
            busy = now - self._last_submit < self.quiet
            # While requests keep coming, pause so that running took at most `share`.
            self._resume_at = now + ((now - started) * (1 / self.share - 1) if busy else 0.0)


def init_app(app: Flask) -> None:
    app.extensions["kassa_jobs"] = JobRunner(app)
    # Import task modules so their names are registered.
    from app.payments import tasks  # noqa: F401

    if app.config.get("CELERY_BROKER_URL"):
        get_celery(app)
    from app.jobs import scheduler

    scheduler.init_app(app)
