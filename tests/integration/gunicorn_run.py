"""gunicorn with the repository's gunicorn.conf.py, as deployed, for the tests that need
real worker processes (test_gunicorn_default.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(
    app: str, log_path: Path, **settings: str | None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`gunicorn -c gunicorn.conf.py app` on a free port: (port, master process).

    `settings` override the environment (None removes a variable, so gunicorn.conf.py's
    default applies). On exit the whole process group is stopped, workers included, even
    one a test left suspended."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["BIND"] = f"127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield port, proc
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
