"""Fixtures for the reliability tests: apps on this test's PostgreSQL database (`pg_url`),
real brokers (Redis, RabbitMQ), real Celery worker subprocesses, and helpers that run app
code in a subprocess that a fault point may kill.

Skips (clearly) when TEST_DATABASE_URL is unset or a broker does not answer.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec_sandbox_test_secret"
REDIS_URL = os.environ.get("CELERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("CELERY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def make_pg_app(make_app: Callable[..., Flask], pg_url: str) -> Callable[..., Flask]:
    """`make_pg_app(**overrides)`: an app on this test's PostgreSQL database (`pg_url`),
    reconciling without a grace period and retrying gateway calls without waiting."""

    def build(**overrides: Any) -> Flask:
        settings: dict[str, Any] = {
            "SQLALCHEMY_DATABASE_URI": pg_url,
            "RECONCILE_GRACE_SECONDS": 0,
            "GATEWAY_BACKOFF_SECONDS": 0.01,
        }
        settings.update(overrides)
        return make_app(**settings)

    return build


def _redis_up(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


def _amqp_up(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=1) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return False


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each Celery test runs on Redis and on RabbitMQ (skipped when one is not running)."""
    if request.param == "redis":
        if not _redis_up(REDIS_URL):
            pytest.skip(f"Redis does not answer at {REDIS_URL} (CELERY_TEST_REDIS_URL)")
        return REDIS_URL
    if not _amqp_up(AMQP_URL):
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL} (CELERY_TEST_AMQP_URL)")
    return AMQP_URL


def base_env(database_url: str, instance: Path, **extra: str) -> dict[str, str]:
    """Environment for an app process of ours (worker or crash subprocess)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KASSA_", "CELERY_", "STRIPE_", "RAZORPAY_"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "test-secret-" + "x" * 40,
            "SANDBOX_WEBHOOK_SECRET": SECRET,
            "SANDBOX_DELIVER_WEBHOOKS": "false",
            "KASSA_INSTANCE_PATH": str(instance),
            "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
            "RATELIMIT_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


class Worker:
    """A real `celery -A app.jobs.worker worker` subprocess (solo pool)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app.jobs.worker",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"kassa-test-{secrets.token_hex(3)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            "celery worker did not start:\n" + self.log_path.read_text(errors="replace")[-3000:]
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no ack, no rollback by us (the database aborts it)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        # Its tasks are acknowledged late, so killing it outright can lose nothing.
        self.kill()
        self.log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(env: dict[str, str]) -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


SUBPROCESS = """
import json, sys
from app import create_app
config = json.loads(sys.argv[1])
app = create_app(config)
with app.test_request_context(base_url=config["PUBLIC_BASE_URL"]):
    from app.payments.audit import Actor
    actor = Actor("user", "crash-test")
    action = sys.argv[2]
    arg = sys.argv[3]
    if action == "checkout":
        from app.payments.checkout import create_checkout
        from app.payments.orders import ItemRequest
        create_checkout([ItemRequest(arg, 1)], "crash@example.com", "Crash", "sandbox", actor)
    elif action == "capture":
        from app.payments.refunds import capture_payment
        capture_payment(arg, actor)
    elif action == "refund":
        from app.payments.refunds import create_refund
        create_refund(arg, None, "crash test", actor, idempotency_key="crash-refund-1")
print("survived")
"""


def run_in_subprocess(
    app: Flask, action: str, arg: str, **config: Any
) -> subprocess.CompletedProcess[str]:
    """Run one core call in a fresh process on the same database and settings."""
    settings = {
        "TESTING": True,
        "SECRET_KEY": app.config["SECRET_KEY"],
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "INSTANCE_PATH": app.instance_path,
        "SANDBOX_DELIVER_WEBHOOKS": False,
        "JOBS_EAGER": True,
        "SANDBOX_WEBHOOK_SECRET": SECRET,
        "RATELIMIT_ENABLED": False,
        "PUBLIC_BASE_URL": app.config["PUBLIC_BASE_URL"],
        "CAPTURE_METHOD": app.config["CAPTURE_METHOD"],
    }
    settings.update(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", SUBPROCESS, json.dumps(settings), action, arg],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def count(app: Flask, model: Any, *where: Any) -> int:
    with app.app_context():
        value = db.session.execute(
            select(func.count()).select_from(model).where(*where)
        ).scalar_one()
        db.session.rollback()
        return int(value)


def post_events(app: Flask, events: list[tuple[bytes, dict[str, str]]]) -> None:
    client = app.test_client()
    for body, headers in events:
        response = client.post("/webhooks/sandbox", data=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
