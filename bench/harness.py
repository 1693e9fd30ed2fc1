"""Processes and databases for the benchmarks: PostgreSQL databases made and dropped per
run, gunicorn started with the production gunicorn.conf.py, the load generator run as a
separate process, worker RSS read from /proc, and the machine described."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
# Scratch files (logs, metrics dirs, results JSON); tests point it at a tmp dir.
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "out")
SECRET_KEY = "bench-secret-" + "k" * 40
# Production refuses to start without them (app/crypto.py); fixed so every bench process
# (servers, sweepers, the harness writing rows) reads what the others wrote.
ENCRYPTION_KEYS = "QmVuY2gtZW5jcnlwdGlvbi1rZXktMzItYnl0ZXMhISE="
BLIND_INDEX_KEY = "bench-blind-index-" + "i" * 40
KEY_SETTINGS = {"ENCRYPTION_KEYS": ENCRYPTION_KEYS, "BLIND_INDEX_KEY": BLIND_INDEX_KEY}
WEBHOOK_SECRET = "whsec_bench_sandbox_secret"
METRICS_TOKEN = "mt_" + "Qx7v" * 8  # production requires one; bench scrapes with it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin_url() -> str:
    url = (
        os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("TEST_DATABASE_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    return url


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def postgres_available() -> bool:
    try:
        with psycopg.connect(_plain(admin_url()), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - unreachable, for whatever reason
        return False


@dataclass
class Database:
    name: str
    url: str  # SQLAlchemy URL

    @classmethod
    def create(cls, label: str) -> Database:
        name = f"kassa_bench_{label}_{secrets.token_hex(4)}"
        with psycopg.connect(_plain(admin_url()), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = re.sub(r"/[^/]*$", f"/{name}", admin_url())
        if not url.startswith("postgresql+psycopg://"):
            url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return cls(name, url)

    def drop(self) -> None:
        with psycopg.connect(_plain(admin_url()), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def migrate_and_seed_demo(self) -> None:
        """Run the app's migrations and demo seed in a child process (clean app state)."""
        code = (
            "from flask_migrate import upgrade\n"
            "from app import create_app\nfrom app.cli import seed_demo_data\n"
            "import os\n"
            "app = create_app({'SQLALCHEMY_DATABASE_URI': os.environ['DATABASE_URL'],"
            " 'INSTANCE_PATH': os.environ['BENCH_INSTANCE_PATH'], 'LOG_LEVEL': 'WARNING'})\n"
            "with app.app_context():\n    upgrade()\n    seed_demo_data()\n"
        )
        env = dict(
            os.environ,
            DATABASE_URL=self.url,
            BENCH_INSTANCE_PATH=str(OUT / "instance"),
            SECRET_KEY=SECRET_KEY,
            LOG_LEVEL="WARNING",
            **KEY_SETTINGS,
        )
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(_plain(self.url)) as conn:
            return list(conn.execute(sql).fetchall())

    def scalar(self, sql: str) -> Any:
        with psycopg.connect(_plain(self.url)) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None


@dataclass
class Server:
    """gunicorn with the repo's gunicorn.conf.py, as in production."""

    app: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        OUT.mkdir(parents=True, exist_ok=True)
        name = self.app.split(":")[0].replace(".", "_")
        self.log_path = OUT / f"gunicorn-{name}-{self.port}.log"
        env = dict(os.environ)
        env.update(
            {
                "BIND": f"127.0.0.1:{self.port}",
                # As behind a TLS-terminating balancer: production insists on an https address
                # (the load generator talks plain HTTP to the loopback port).
                "PUBLIC_BASE_URL": self.url.replace("http://", "https://", 1),
                "PROMETHEUS_MULTIPROC_DIR": str(OUT / f"prom-{self.port}"),
            }
        )
        env.update(self.env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), self.app],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # its own process group: stop() reaches the workers
        deadline = time.monotonic() + timeout
        workers = int(env.get("WEB_CONCURRENCY", "2"))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited; see {self.log_path}:\n" + self.log_path.read_text()[-3000:]
                )
            try:
                if (
                    requests.get(self.url + "/healthz", timeout=1).status_code == 200
                    and len(self.worker_pids()) >= workers
                ):
                    # Let the other workers finish booting (each answers /healthz).
                    for _ in range(workers * 2):
                        requests.get(self.url + "/healthz", timeout=5)
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not become healthy; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def worker_rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmRSS:\s+(\d+) kB", status)
            if match:
                sizes.append(round(int(match.group(1)) / 1024, 1))
        return sizes

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            # Workers outliving their master (killed above) would load the next benchmark.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


def app_env(db: Database, **extra: str) -> dict[str, str]:
    """The production settings the benchmarks run with (see bench/RESULTS.md)."""
    env = {
        "KASSA_ENV": "production",
        "DATABASE_URL": db.url,
        "SECRET_KEY": SECRET_KEY,
        "ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "BLIND_INDEX_KEY": BLIND_INDEX_KEY,
        "SANDBOX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "METRICS_TOKEN": METRICS_TOKEN,
        "SANDBOX_DELIVER_WEBHOOKS": "false",
        "SESSION_COOKIE_SECURE": "true",  # production requires it; the load generator
        # is not a browser and sends it over loopback
        "RATELIMIT_ENABLED": "false",  # one client address sends everything
        "BENCH_INSTANCE_PATH": str(OUT / "instance"),
        "LOG_JSON": "true",
        "LOG_LEVEL": "INFO",  # the JSON access log line per request included
        "WEB_CONCURRENCY": str(os.cpu_count() or 2),
        # gunicorn.conf.py's default worker class (gevent) unless BENCH_WORKER_CLASS names
        # another, e.g. gthread with THREADS=128.
        "WORKER_CLASS": os.environ.get("BENCH_WORKER_CLASS") or "gevent",
        "THREADS": "128",  # used by thread worker classes only
        "DB_POOL_SIZE": "16",
        "DB_MAX_OVERFLOW": "8",  # 2 workers x 24 = 48 of PostgreSQL's 100
    }
    env.update(extra)
    return env


def loadgen(scenario: str, cfg: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Run the load generator as its own process; returns its summary."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", scenario, json.dumps(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Process:
    """A helper process (the fake gateway) stopped on exit."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=dict(os.environ, **(env or {})),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


REFERENCE_LABEL = "reference work, CPU ms (lower is faster; {when})"


def reference_work_ms() -> float:
    """CPU time of a fixed piece of pure-Python work (JSON round trips), best of three.

    Sessions here run on machines that report the same CPU model but need not be equally
    fast (bare Flask in the webhook benchmark: 6,696 requests/s in one session's run,
    2,590-3,735/s in the next session's three). This figure, taken at the start and the
    end of a run, says how fast the machine was, so that runs on different days compare.
    """
    doc = {
        "id": "evt_reference",
        "amount": 2500,
        "currency": "USD",
        "lines": list(range(20)),
        "note": "x" * 100,
        "metadata": {"payment_id": "pay_reference"},
    }
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(20000):
            json.loads(json.dumps(doc))
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def machine() -> dict[str, str]:
    info: dict[str, str] = {}
    info["cpus (nproc)"] = str(len(os.sched_getaffinity(0)))
    try:
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        info["cpu model"] = model.group(1).strip() if model else platform.processor()
        mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        info["memory"] = f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?"
    except OSError:
        pass
    info["kernel"] = platform.release()
    info["load average at start (1, 5, 15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info[REFERENCE_LABEL.format(when="at start")] = str(reference_work_ms())
    info["python"] = platform.python_version()
    try:
        import gunicorn

        info["gunicorn"] = gunicorn.__version__
    except ImportError:
        pass
    try:
        with psycopg.connect(_plain(admin_url()), connect_timeout=2) as conn:
            row = conn.execute("SELECT version()").fetchone()
            info["database"] = str(row[0]).split(" on ")[0] if row else "?"
            for setting in ("shared_buffers", "max_connections"):
                value = conn.execute(f"SHOW {setting}").fetchone()
                info[f"postgres {setting}"] = str(value[0]) if value else "?"
    except Exception as exc:  # noqa: BLE001 - describe the machine anyway
        info["database"] = f"unavailable ({type(exc).__name__})"
    return info
