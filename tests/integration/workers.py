"""Several gunicorn workers (gunicorn.conf.py, as deployed) on one test database, for the
tests of what every worker must agree on (limits, the scheduler's leader)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import requests

from tests.integration.gunicorn_run import gunicorn

SECRET = "multi-worker-" + "k" * 40


@contextmanager
def workers(
    database_url: str, tmp_path: Path, log_name: str = "gunicorn.log", **settings: str | None
) -> Iterator[tuple[str, Popen[bytes]]]:
    """(base URL, master process) of gunicorn serving wsgi:app on `database_url`."""
    env: dict[str, str | None] = {
        "KASSA_ENV": "development",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "SESSION_COOKIE_SECURE": "false",
        "SANDBOX_DELIVER_WEBHOOKS": "false",
        "WEB_CONCURRENCY": "3",
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "LOG_LEVEL": "INFO",
        "REDIS_URL": None,
        "RATELIMIT_STORAGE_URI": None,
        "CELERY_BROKER_URL": None,
    }
    env.update(settings)
    log = tmp_path / log_name
    with gunicorn("wsgi:app", log, **env) as (port, proc):
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, proc
