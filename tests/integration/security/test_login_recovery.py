"""Sign-in throttling that never locks the owner out, and the way back: a reset by email."""

from __future__ import annotations

import email
import re
from pathlib import Path
from typing import Any

from sec_helpers import OWNER_EMAIL, OWNER_PASSWORD, csrf_from, login
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, User

NEW_PASSWORD = "lantern meadow quartz violin"


def _attempt(client: Any, password: str, addr: str = "127.0.0.1", mail: str = OWNER_EMAIL) -> Any:
    page = client.get("/auth/login", environ_base={"REMOTE_ADDR": addr})
    return client.post(
        "/auth/login",
        environ_base={"REMOTE_ADDR": addr},
        data={"email": mail, "password": password, "csrf_token": csrf_from(page.text)},
    )


def _reset_mails(app: Any) -> list[email.message.EmailMessage]:
    outbox = Path(app.instance_path) / "outbox"
    files = sorted(outbox.glob("password-reset-*.eml")) if outbox.exists() else []
    return [
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for f in files
    ]


def _ask_for_link(client: Any, address: str) -> Any:
    page = client.get("/auth/forgot")
    return client.post("/auth/forgot", data={"email": address, "csrf_token": csrf_from(page.text)})


def _link(app: Any) -> str:
    (mail,) = _reset_mails(app)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"http://localhost(/auth/reset/\S+)", text)
    assert match, text
    return match.group(1)


def _choose(client: Any, path: str, password: str, confirm: str | None = None) -> Any:
    page = client.get(path)
    return client.post(
        path,
        data={
            "password": password,
            "confirm": password if confirm is None else confirm,
            "csrf_token": csrf_from(page.text),
        },
    )


def test_pauses_grow_and_a_success_clears_them(app: Any, client: Any) -> None:
    throttle = app.extensions["kassa_login_throttle"]
    for _ in range(5):
        last = _attempt(client, "wrong password here")
    assert "paused for 30 seconds" in last.text
    # The pause runs out (as if 30 s had passed); the next failure pauses twice as long.
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        throttle.storage.clear(throttle._pause_key(OWNER_EMAIL))
    assert "paused for 1 minute" in _attempt(client, "still wrong here").text
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        throttle.storage.clear(throttle._pause_key(OWNER_EMAIL))
    assert "paused for 2 minutes" in _attempt(client, "wrong once more").text
    with app.test_request_context(environ_base={"REMOTE_ADDR": "127.0.0.1"}):
        throttle.storage.clear(throttle._pause_key(OWNER_EMAIL))
    assert _attempt(client, OWNER_PASSWORD).status_code == 303
    client.post("/auth/logout", data={"csrf_token": csrf_from(client.get("/dashboard/").text)})
    assert "4 more tries" in _attempt(client, "wrong again").text


def test_distributed_guessing_stops_but_the_owners_browser_gets_in(make_app: Any) -> None:
    app = make_app(LOGIN_LIMIT_ACCOUNT_UNKNOWN_DEVICES="4 per hour")
    owner = app.test_client()
    assert login(owner).status_code == 303  # the owner's browser gets its device cookie
    owner.post("/auth/logout", data={"csrf_token": csrf_from(owner.get("/dashboard/").text)})
    guesser = app.test_client()
    codes = [_attempt(guesser, "guess number one", addr=f"203.0.113.{n}") for n in range(5)]
    assert [c.status_code for c in codes] == [401] * 4 + [429]
    # A new browser is held for the account too, even with the right password...
    assert _attempt(app.test_client(), OWNER_PASSWORD, addr="198.51.100.1").status_code == 429
    # ...but the browser the owner signed in with before is not.
    assert _attempt(owner, OWNER_PASSWORD, addr="198.51.100.2").status_code == 303


def test_reset_by_email_is_signed_single_use_and_ends_sessions(app: Any, client: Any) -> None:
    signed_in = app.test_client()
    assert login(signed_in).status_code == 303
    for _ in range(5):
        _attempt(client, "wrong password here")
    assert _attempt(client, OWNER_PASSWORD).status_code == 429

    unknown = _ask_for_link(client, "nobody@nowhere.example")
    known = _ask_for_link(client, OWNER_EMAIL.upper())
    # The same answer whether the account exists or not; only the owner gets a mail.
    assert unknown.status_code == known.status_code == 200
    assert "If <strong>nobody@nowhere.example</strong> has a merchant account" in unknown.text
    (mail,) = _reset_mails(app)
    assert mail["To"] == OWNER_EMAIL and "Reset your" in mail["Subject"]
    assert mail.get_body(preferencelist=("html",)) is not None
    path = _link(app)

    tampered = client.get(path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb"))
    assert tampered.status_code == 400 and "not valid" in tampered.text
    weak = _choose(client, path, "password1234")
    assert weak.status_code == 422 and "too common" in weak.text
    mismatch = _choose(client, path, NEW_PASSWORD, "something else entirely")
    assert mismatch.status_code == 422 and "not the same" in mismatch.text

    done = _choose(client, path, NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["Location"].endswith("/auth/login")
    assert "Your password is changed" in client.get("/auth/login").text
    # Used once: the same link now refuses.
    again = client.get(path)
    assert again.status_code == 400 and "already used" in again.text
    # The old session ended; the pause for this address is lifted; the new password works.
    assert signed_in.get("/dashboard/").status_code == 302
    assert _attempt(client, OWNER_PASSWORD).status_code == 401
    assert _attempt(client, NEW_PASSWORD).status_code == 303
    with app.app_context():
        user = db.session.execute(select(User).where(User.email == OWNER_EMAIL)).scalar_one()
        actions = db.session.execute(
            select(AuditEntry.action).where(AuditEntry.actor_id == str(user.id))
        ).scalars()
        assert {"user.password_reset_requested", "user.password_reset"} <= set(actions)


def test_reset_links_expire(make_app: Any) -> None:
    app = make_app(PASSWORD_RESET_MINUTES=0)
    client = app.test_client()
    _ask_for_link(client, OWNER_EMAIL)
    import time

    time.sleep(1.1)
    expired = client.get(_link(app))
    assert expired.status_code == 400 and "expired" in expired.text
