"""The embedded default's periodic tasks: a small scheduler thread (no broker, no beat).

Started by create_app's first request when SCHEDULER_ENABLED is on, no broker is
configured and the app is not TESTING, so `make run` needs nothing else. CLI commands
never start it. Each due task is handed to the in-process job runner.

Every worker of every instance runs a scheduler. With REDIS_URL set they share one
schedule: a task runs where it first takes its Redis key for the interval (SET NX PX), so
a task runs once per interval across all of them, not once per worker. Without Redis each
process keeps its own (the tasks are safe to run at once: row locks, SKIP LOCKED).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, app: Flask, schedule: dict[str, float], tick: float = 1.0) -> None:
        self.app = app
        self.schedule = schedule  # task name -> interval in seconds
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._redis: Any = None
        # Run each task soon after start (catch up after a restart), then on its interval.
        now = time.monotonic()
        self.next_run = {name: now + min(5.0, interval) for name, interval in schedule.items()}

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="kassa-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_due(self) -> list[str]:
        from app.jobs import dispatch

        now = time.monotonic()
        ran = []
        for name, interval in self.schedule.items():
            if now >= self.next_run[name]:
                self.next_run[name] = now + interval
                if not self._claim(name, interval):
                    continue  # another worker or instance runs it this interval
                log.info("periodic task %s dispatched", name)
                with self.app.app_context():
                    dispatch(name)
                ran.append(name)
        return ran

    def _claim(self, name: str, interval: float) -> bool:
        url = self.app.config.get("REDIS_URL")
        if not url:
            return True
        import redis

        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(url, socket_timeout=2)
            # A little less than the interval, so the next holder's clock drift never
            # makes a whole interval go by without a run.
            ttl = max(100, int(interval * 1000 * 0.9))
            return bool(self._redis.set(f"kassa:periodic:{name}", "1", nx=True, px=ttl))
        except (redis.RedisError, OSError):  # Redis away: run it here (safe to run twice)
            log.warning("periodic task %s: Redis unavailable, running it here", name)
            return True

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_due()
            except Exception:  # the scheduler must outlive any one failure
                log.exception("scheduler tick failed")


def schedule_from_config(app: Flask) -> dict[str, float]:
    from app.jobs.celery_app import PERIODIC

    return {task: float(app.config[setting]) for task, setting in PERIODIC.values()}


def init_app(app: Flask) -> None:
    if (
        app.config.get("TESTING")
        or not app.config.get("SCHEDULER_ENABLED")
        or app.config.get("CELERY_BROKER_URL")
    ):
        return
    scheduler = Scheduler(app, schedule_from_config(app))
    app.extensions["kassa_scheduler"] = scheduler

    @app.before_request
    def _start_scheduler() -> None:
        # Only a serving process schedules (never `flask db upgrade` and other commands).
        if not scheduler.running:
            scheduler.start()
