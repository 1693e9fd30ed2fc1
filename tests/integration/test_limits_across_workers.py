"""Sign-in throttles hold across gunicorn workers (issue 23 item 5): with per-process
memory, three workers checked 10 wrong passwords against an account limit of 5 and 37
sign-ins from one address against a limit of 20. The default store is the database."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask
from werkzeug.security import generate_password_hash

from app.extensions import db
from app.models import Role, User
from tests.integration.workers import workers

PASSWORD = "correct horse battery staple"


def _attempt(base: str, address: str, email: str, password: str) -> int:
    """One sign-in from a new browser on a new connection (any worker may take it)."""
    with requests.Session() as browser:
        browser.headers["X-Forwarded-For"] = address
        page = browser.get(f"{base}/auth/login", timeout=10).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
        assert token, page[:300]
        answer = browser.post(
            f"{base}/auth/login",
            data={"csrf_token": token.group(1), "email": email, "password": password},
            allow_redirects=False,
            timeout=10,
        )
        return answer.status_code


@pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)
def test_sign_in_limits_hold_across_workers(
    make_app: Callable[..., Flask], database_url: str, tmp_path: Path
) -> None:
    app = make_app()
    with app.app_context():
        db.session.add(
            User(
                email="owner@example.com",
                password_hash=generate_password_hash(PASSWORD),
                role=Role.OWNER,
            )
        )
        db.session.commit()
        db.engine.dispose()
    with workers(database_url, tmp_path, PROXY_FIX_HOPS="1") as (base, _):
        # One account from one address: 5 wrong passwords are checked, then it pauses.
        account = Counter(
            _attempt(base, "10.0.0.1", "owner@example.com", "wrong") for _ in range(10)
        )
        assert account == {401: 5, 429: 5}, account
        # The owner, elsewhere, is not locked out.
        assert _attempt(base, "10.0.0.9", "owner@example.com", PASSWORD) == 303
        # One address over many accounts: 20 are checked.
        spray = Counter(
            _attempt(base, "10.0.0.2", f"guess{i}@example.com", "wrong") for i in range(37)
        )
        assert spray == {401: 20, 429: 17}, spray
