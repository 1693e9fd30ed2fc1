"""Under gevent workers (the deployed default): a sign-in's ~70 ms password hash must not
stall the worker's other requests (it runs on gevent's native thread pool), and the
pool's liveness check on a database connection still tells a dead one from a live one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a child: gevent's monkey-patching must come first and must not leak into pytest.
PROBE = """
from gevent import monkey
monkey.patch_all()
import sys, time
import gevent
from werkzeug.security import check_password_hash, generate_password_hash
from app.serving.greenlets import off_the_event_loop

stored = generate_password_hash("correct horse battery staple")
ticks = []

def other_requests():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.005)

def sign_in():
    if sys.argv[1] == "offloaded":
        return off_the_event_loop(check_password_hash, stored, "a wrong password")
    return check_password_hash(stored, "a wrong password")

ticker = gevent.spawn(other_requests)
gevent.sleep(0.05)
before = len(ticks)
started = time.monotonic()
ok = gevent.spawn(sign_in).get()
took = time.monotonic() - started
during = len(ticks) - before
ticker.kill()
print(ok, round(took * 1000), during)
"""


def _run(mode: str) -> tuple[str, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    return out[0], int(out[1]), int(out[2])


def test_a_password_check_leaves_the_other_requests_running() -> None:
    ok, took_ms, ticks = _run("offloaded")
    assert ok == "False"  # the wrong password is still refused
    # The other request kept its 5 ms rhythm through the whole hash.
    assert ticks >= max(3, took_ms // 5 // 3), (took_ms, ticks)


def test_the_same_check_on_the_event_loop_would_stall_them() -> None:
    # What the test above guards against: the hash holds the only thread.
    ok, took_ms, ticks = _run("inline")
    assert ok == "False"
    assert ticks <= 2, (took_ms, ticks)


POOL_PROBE = """
from gevent import monkey
monkey.patch_all()
import select, socket
from app.db import _native_poll, connection_was_closed

class Conn:   # what the check reads from a DB-API connection: closed and fileno()
    closed = False
    def __init__(self, sock): self.fileno = sock.fileno

ours, server = socket.socketpair()
alive = connection_was_closed(Conn(ours))
server.close()                      # the server went away
dead = connection_was_closed(Conn(ours))
print(alive, dead, _native_poll() is select.poll)
"""


def test_the_pools_liveness_check_works_under_gevent_without_its_cooperative_poll() -> None:
    out = subprocess.run(
        [sys.executable, "-c", POOL_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out[:2] == ["False", "True"]  # a live connection kept, a dead one refused
    assert out[2] == "False"  # with the OS's poll(), not gevent's
