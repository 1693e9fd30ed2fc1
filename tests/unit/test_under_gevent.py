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


# The same through the app as built: create_app's serving.init_app installs the runner
# the sign-in's password check goes through (the door does not import app/serving).
SIGN_IN_PROBE = """
from gevent import monkey
monkey.patch_all()
import sys, time
import gevent
from werkzeug.security import generate_password_hash
from app import create_app
from app.auth.service import authenticate
from app.extensions import db
from app.models import User

app = create_app({"TESTING": True, "SECRET_KEY": "x" * 40, "SQLALCHEMY_DATABASE_URI": "sqlite://",
                  "JOBS_EAGER": True, "RATELIMIT_ENABLED": False})
ticks = []

def other_requests():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.005)

def sign_in(password):  # a request of its own: its own greenlet and app context
    with app.app_context():
        return authenticate("owner@example.com", password)

with app.app_context():
    db.create_all()
    db.session.add(User(email="owner@example.com",
                        password_hash=generate_password_hash("correct horse battery staple")))
    db.session.commit()
    ticker = gevent.spawn(other_requests)
    gevent.sleep(0.05)
    found = []
    for password in ("a wrong password", "correct horse battery staple"):
        before = len(ticks)
        started = time.monotonic()
        user = gevent.spawn(sign_in, password).get()
        found.append((user is not None, round((time.monotonic() - started) * 1000),
                      len(ticks) - before))
    ticker.kill()
for ok, took, during in found:
    print(ok, took, during)
"""


def test_signing_in_through_the_app_leaves_the_other_requests_running() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SIGN_IN_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    (wrong, wrong_ms, wrong_ticks), (right, right_ms, right_ticks) = (
        (out[i], int(out[i + 1]), int(out[i + 2])) for i in (0, 3)
    )
    assert (wrong, right) == ("False", "True")  # the check still tells them apart
    # On the event loop the other request would tick at most twice (the test above); off it,
    # it keeps ticking (loosely counted: a loaded machine stretches its 5 ms rhythm).
    for took_ms, ticks in ((wrong_ms, wrong_ticks), (right_ms, right_ticks)):
        assert ticks >= max(5, took_ms // 5 // 6), (took_ms, ticks)


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
