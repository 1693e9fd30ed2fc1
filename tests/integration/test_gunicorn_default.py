"""gunicorn as deployed by default (gunicorn.conf.py, gevent workers): one worker keeps
serving new requests while earlier ones wait on a slow gateway."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.integration.gunicorn_run import gunicorn

CUSTOMERS = 30


class SlowGateway(BaseHTTPRequestHandler):
    """Answers after a second and counts the calls waiting at once."""

    lock = threading.Lock()
    waiting = 0
    most_waiting = 0

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.waiting += 1
            cls.most_waiting = max(cls.most_waiting, cls.waiting)
        time.sleep(1.0)
        with cls.lock:
            cls.waiting -= 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # every customer's call is let in at once
    daemon_threads = True


def _get(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_one_default_worker_serves_many_customers_while_the_gateway_is_slow(tmp_path: Path) -> None:
    gateway = _Server(("127.0.0.1", 0), SlowGateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    log = tmp_path / "gunicorn.log"
    try:
        # One worker with one thread: whatever serves the customers at once is the worker
        # class, gunicorn.conf.py's default (WORKER_CLASS unset).
        with gunicorn(
            "tests.integration.gunicorn_upstream_app:app",
            log,
            WORKER_CLASS=None,
            WEB_CONCURRENCY="1",
            THREADS="1",
            LOG_LEVEL="info",
            UPSTREAM_URL=f"http://127.0.0.1:{gateway.server_port}/",
        ) as (port, proc):
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    assert _get(port) == 200
                    break
                except OSError:
                    assert time.monotonic() < deadline, "gunicorn did not come up"
                    time.sleep(0.1)
            SlowGateway.most_waiting = 0
            with ThreadPoolExecutor(CUSTOMERS) as pool:
                statuses = list(pool.map(lambda _: _get(port), range(CUSTOMERS)))
            assert statuses == [200] * CUSTOMERS
            # They waited on the gateway together, not one after another (one thread: 1).
            assert SlowGateway.most_waiting >= CUSTOMERS // 2, SlowGateway.most_waiting
            assert "Using worker: gevent" in log.read_text()
    finally:
        gateway.shutdown()
        gateway.server_close()
