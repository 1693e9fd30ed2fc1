"""Two Kassa instances for real: two gunicorn servers (gunicorn.conf.py, gevent workers)
behind HAProxy from Debian, sharing PostgreSQL and Redis. A webhook received by instance
A updates a dashboard stream held on instance B within a second (Redis pub/sub, not the
database resync); the API's rate limit and the periodic tasks hold across both.

HAProxy routes by the test's `X-Kassa-Instance` header when it is sent, round robin
otherwise, so the test can say which instance takes which request while everything still
goes through the balancer. docs/DEPLOYMENT.md has the same recipe for production.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.security import generate_password_hash

from tests.integration.gunicorn_run import free_port, gunicorn

pytestmark = pytest.mark.postgres

REDIS_URL = "redis://127.0.0.1:6379/14"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SECRET = "two-instances-" + "k" * 40
SANDBOX_SECRET = "whsec_two_instances_sandbox"
PASSWORD = "correct horse battery staple"
HAPROXY_CFG = """
global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option forwardfor
frontend web
    bind 127.0.0.1:{lb}
    default_backend kassa
backend kassa
    balance roundrobin
    use-server a if {{ req.hdr(x-kassa-instance) -m str a }}
    use-server b if {{ req.hdr(x-kassa-instance) -m str b }}
    server a 127.0.0.1:{a}
    server b 127.0.0.1:{b}
"""


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def _wait_ready(url: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.fixture
def redis_db() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def cluster(
    tmp_path: Path,
    redis_db: str,
    create_pg_database: Callable[..., AbstractContextManager[str]],
) -> Iterator[dict[str, Any]]:
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy is not installed (apt-get install -y haproxy; .ci/run does)")
    lb = free_port()
    with ExitStack() as stack:
        url = stack.enter_context(create_pg_database(migrate=True))
        env = {
            "KASSA_ENV": "development",
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET,
            "REDIS_URL": redis_db,
            "RATELIMIT_STORAGE_URI": redis_db,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{lb}",
            "SANDBOX_WEBHOOK_SECRET": SANDBOX_SECRET,
            "SANDBOX_DELIVER_WEBHOOKS": "false",
            "SESSION_COOKIE_SECURE": "false",
            "PROXY_FIX_HOPS": "1",
            "API_CHECKOUT_RATE_LIMIT": "4 per minute",
            "EXPIRE_INTERVAL_SECONDS": "1",
            "LIVE_HEARTBEAT_SECONDS": "2",
            # Far longer than the test: an update can only arrive over Redis.
            "LIVE_RESYNC_SECONDS": "600",
            "WEB_CONCURRENCY": "2",
            "INSTANCE_PATH": str(tmp_path / "instance"),
        }
        logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
        a_port, _ = stack.enter_context(gunicorn("wsgi:app", logs["a"], **env))
        b_port, _ = stack.enter_context(gunicorn("wsgi:app", logs["b"], **env))
        config = tmp_path / "haproxy.cfg"
        config.write_text(HAPROXY_CFG.format(lb=lb, a=a_port, b=b_port))
        proxy_log = stack.enter_context((tmp_path / "haproxy.log").open("wb"))
        proxy = subprocess.Popen(
            [HAPROXY, "-f", str(config), "-db"], stdout=proxy_log, stderr=subprocess.STDOUT
        )
        stack.callback(lambda: (proxy.terminate(), proxy.wait(10)))
        _wait_port(lb)
        for port in (a_port, b_port):
            _wait_ready(f"http://127.0.0.1:{port}/healthz")
        yield {"lb": f"http://127.0.0.1:{lb}", "db": url, "logs": logs, "env": env}


def _test_app(cluster: dict[str, Any]) -> Any:
    from app import create_app

    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "SQLALCHEMY_DATABASE_URI": cluster["db"],
            "SANDBOX_WEBHOOK_SECRET": SANDBOX_SECRET,
            "SANDBOX_DELIVER_WEBHOOKS": False,
            "JOBS_EAGER": True,
            "PUBLIC_BASE_URL": cluster["lb"],
            "INSTANCE_PATH": cluster["env"]["INSTANCE_PATH"],
        }
    )


def _sign_in(base: str, instance: str) -> requests.Session:
    session = requests.Session()
    session.headers["X-Kassa-Instance"] = instance
    page = session.get(f"{base}/auth/login", timeout=10).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token
    done = session.post(
        f"{base}/auth/login",
        data={"csrf_token": token.group(1), "email": "owner@example.com", "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 303, done.text[:300]
    return session


@pytest.fixture
def test_app(cluster: dict[str, Any]) -> Iterator[Any]:
    """An app of the test's own on the cluster's database (to seed and sign events)."""
    from app.extensions import db

    app = _test_app(cluster)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_two_instances_behind_haproxy(cluster: dict[str, Any], test_app: Any) -> None:
    from sqlalchemy import func, select

    from app.cli import seed_demo_data
    from app.extensions import db
    from app.models import OutboxEvent, User
    from tests.integration.test_webhooks import start_purchase

    base = cluster["lb"]
    app = test_app
    with app.app_context():
        seed_demo_data()
        db.session.add(
            User(
                email="owner@example.com",
                role="owner",
                password_hash=generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000"),
                session_token=secrets.token_hex(16),
            )
        )
        db.session.commit()
    payment, events = start_purchase(app)

    # The merchant's dashboard stream, held on instance B (through the balancer).
    merchant = _sign_in(base, "b")
    # From where the outbox stands now (after the checkout's customer.created), as a page
    # rendered now would ask.
    with app.app_context():
        since = db.session.execute(select(func.max(OutboxEvent.seq))).scalar_one() or 0
    stream = merchant.get(f"{base}/dashboard/events?since={since}", stream=True, timeout=(5, 30))
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    received: list[tuple[float, str]] = []

    def read() -> None:
        try:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    received.append((time.monotonic(), line[6:]))
        except (requests.RequestException, AttributeError, ValueError):
            pass

    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.0)  # B's worker has subscribed to Redis
    assert received == []

    # The gateway's webhooks arrive at instance A.
    for body, headers in events:
        answer = requests.post(
            f"{base}/webhooks/sandbox",
            data=body,
            headers={**headers, "X-Kassa-Instance": "a"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    answered = time.monotonic()
    deadline = answered + 5
    while not any(payment.public_id in d and "order.paid" in d for _, d in received):
        assert time.monotonic() < deadline, f"nothing reached B: {received}"
        time.sleep(0.01)
    arrived = next(t for t, d in received if "order.paid" in d)
    assert arrived - answered < 1.0, arrived - answered
    stream.close()

    # The keyless checkout limit (4 a minute per client) holds across both instances.
    body = {
        "items": [{"sku": "tee-usd", "quantity": 1}],
        "customer": {"email": "rate@example.com", "name": "Rae"},
    }
    statuses = [
        requests.post(
            f"{base}/api/v1/checkout-sessions",
            json=body,
            headers={"X-Kassa-Instance": "ab"[n % 2]},
            timeout=10,
        ).status_code
        for n in range(5)
    ]
    assert statuses == [201, 201, 201, 201, 429], statuses

    # Periodic tasks: four schedulers (two workers on each instance), one run a second.
    for n in range(8):  # wake every worker's scheduler (each starts on a first request)
        requests.get(f"{base}/", headers={"X-Kassa-Instance": "ab"[n % 2]}, timeout=10)
    time.sleep(4.0)
    stamps = sorted(
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        for path in cluster["logs"].values()
        for line in path.read_text().splitlines()
        if "periodic task checkouts.expire dispatched" in line
    )
    assert len(stamps) >= 3, stamps
    gaps = [(b - a).total_seconds() for a, b in pairwise(stamps)]
    # Never two runs in one interval, whichever worker of whichever instance ran it.
    assert min(gaps) >= 0.5, gaps
