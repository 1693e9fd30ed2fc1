"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app` (or `make serve`).

A checkout spends most of its time waiting on the gateway's HTTP API, so each worker
serves many requests at once on gevent (greenlets): a request waiting on a 250 ms gateway
call, or on the database, costs a little memory, not a CPU, and hands the worker to the
next request without any interpreter-lock contention between OS threads. One worker per
core keeps the CPUs busy. The database pool is sized in app/config.py (requests give
their connection back while they wait on a gateway, and the app's ACTIVE_REQUESTS line
bounds how many run at once, so the pool can be small).

gevent against the thread worker, same machine and hour (bench/NOTES.md): webhook intake
3,517 against 2,033 events/s; checkout at 250 ms gateway latency 303-318 against 241-255/s.

Settings (environment):
  WEB_CONCURRENCY   worker processes (default: number of CPUs)
  WORKER_CLASS      default "gevent"; "gthread" for gunicorn's OS-thread worker instead
  WORKER_CONNECTIONS  requests (greenlets) or connections (gthread) a worker holds at
                    once (default 1000); the app's ACTIVE_REQUESTS, default 4, bounds how
                    many of them run at once (requests waiting on a gateway don't count:
                    app/serving/admission.py)
  THREADS           threads per worker with a thread worker class (default 64)
  BIND              address to listen on (default 0.0.0.0:$PORT, PORT default 8000)
  TIMEOUT           seconds a worker may be silent before it is restarted (default 30)
  GRACEFUL_TIMEOUT  seconds to finish in-flight requests on restart/shutdown (default 30)
  KEEPALIVE         seconds to hold an idle keep-alive connection (default 5); behind a load
                    balancer make it longer than the balancer's idle timeout, so the
                    balancer closes idle connections first and never reuses a dead one
  MAX_REQUESTS      restart a worker after this many requests (default 0 = never), with
                    MAX_REQUESTS_JITTER (default 10% of it) so workers don't restart together
  FORWARDED_ALLOW_IPS  proxies whose X-Forwarded-* headers are trusted (default 127.0.0.1)
  PROMETHEUS_MULTIPROC_DIR  set it (a writable directory) so /metrics adds up all workers;
                    its *.db files are removed at start, a dead worker's gauges on exit.
  LOG_JSON          JSON logs (default on in production); access log lines are JSON too.

The app is NOT preloaded: each worker builds its own app after the fork, so database
engines, the in-process job pool (app/jobs JobRunner threads, greenlets under gevent)
and sockets are never shared across processes; and gevent patches the standard library
in each worker before the app is imported. Preloading would only save a little memory and
start-up time.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from pathlib import Path
from types import ModuleType


def _hooks() -> ModuleType:
    """app/serving/gunicorn.py, loaded by its path: importing it as app.serving.gunicorn
    would import the app's packages (and Flask) in the master, which must load none of it
    (each worker builds its own app, once gevent has patched it)."""
    path = Path(__file__).resolve().parent / "app" / "serving" / "gunicorn.py"
    spec = importlib.util.spec_from_file_location("kassa_gunicorn_hooks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_server_hooks = _hooks()
on_starting = _server_hooks.on_starting
child_exit = _server_hooks.child_exit
post_worker_init = _server_hooks.post_worker_init
worker_int = _server_hooks.worker_int


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


port = _int("PORT", 8000)
bind = os.environ.get("BIND") or f"0.0.0.0:{port}"
workers = _int("WEB_CONCURRENCY", multiprocessing.cpu_count())
worker_class = os.environ.get("WORKER_CLASS", "gevent")
threads = _int("THREADS", 64)
# Kernel listen queue: bursts of customers wait here instead of being refused.
backlog = _int("BACKLOG", 2048)
timeout = _int("TIMEOUT", 30)
graceful_timeout = _int("GRACEFUL_TIMEOUT", 30)
keepalive = _int("KEEPALIVE", 5)
max_requests = _int("MAX_REQUESTS", 0)
max_requests_jitter = _int("MAX_REQUESTS_JITTER", max_requests // 10)
# gevent: requests a worker serves at once; gthread: connections it keeps open at once
# (idle keep-alive ones included).
worker_connections = _int("WORKER_CONNECTIONS", 1000)
preload_app = False
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's access log off by default: the app writes one JSON line per request, with its
# request id (ACCESS_LOG=false turns that off). GUNICORN_ACCESS_LOG=- adds gunicorn's own.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Uploads are tiny (forms, webhooks); refuse anything absurd early.
limit_request_line = 8190
proc_name = "kassa"
