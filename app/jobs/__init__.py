"""Background jobs: enqueue after commit, run in-process or on Celery.

`enqueue("name", *args)` inside a unit of work is held until the transaction commits,
so a job never sees data that was rolled back. With no broker configured (the
embedded default) jobs run on a small in-process thread pool; with JOBS_EAGER they run
inline right after the commit (tests). Tasks must be idempotent: they may run twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flask import Flask, current_app

log = logging.getLogger(__name__)

TASKS: dict[str, Callable[..., Any]] = {}
_local = threading.local()
_build_lock = threading.Lock()


def task(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a function as a job under a stable name."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = fn
        return fn

    return register


def _batches() -> list[list[tuple[str, tuple[Any, ...]]]]:
    if not hasattr(_local, "batches"):
        _local.batches = []
    return _local.batches  # type: ignore[no-any-return]


def begin_batch() -> None:
    _batches().append([])


def discard_batch() -> None:
    if _batches():
        _batches().pop()


def flush_batch() -> None:
    batches = _batches()
    if not batches:
        return
    pending = batches.pop()
    for name, args in pending:
        if batches:  # nested unit of work: hand over to the outer one
            batches[-1].append((name, args))
        else:
            dispatch(name, *args)


def enqueue(name: str, *args: Any) -> None:
    """Run job `name` after the current transaction commits (or now, outside one)."""
    if name not in TASKS:
        raise KeyError(f"unknown job {name!r}")
    batches = _batches()
    if batches:
        batches[-1].append((name, args))
    else:
        dispatch(name, *args)


def dispatch(name: str, *args: Any) -> None:
    """Send a job to Celery when a broker is configured, else to the in-process runner."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
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

    def submit(self, name: str, args: tuple[Any, ...]) -> None:
        if self.eager:
            self.run(name, args)
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

        with self._lock:
            futures = list(self._futures)
        concurrent.futures.wait(futures, timeout=timeout)

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def init_app(app: Flask) -> None:
    app.extensions["kassa_jobs"] = JobRunner(app)
    # Import task modules so their names are registered.
    from app.payments import tasks  # noqa: F401

    if app.config.get("CELERY_BROKER_URL"):
        get_celery(app)
    from app.jobs import scheduler

    scheduler.init_app(app)
