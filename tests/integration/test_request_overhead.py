"""Per-request shortcuts (app/__init__.py Kassa, app/security.py SessionInterface) keep
Flask's behaviour: cached answers are invalidated by what they depend on."""

from __future__ import annotations

from typing import Any

import pytest


def test_session_serializer_is_reused_and_follows_the_secret_key(app: Any) -> None:
    interface = app.session_interface
    first = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is first
    client = app.test_client()
    client.get("/products/tee-usd")  # a first visit stores the CSRF token
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    with app.test_request_context():
        assert first.loads(cookie.value)["csrf_token"]

    old_key = app.secret_key
    app.secret_key = "another-secret-key-for-this-test-0123456789"
    rotated = interface.get_signing_serializer(app)
    assert rotated is not first
    with pytest.raises(Exception, match="Signature"):
        rotated.loads(cookie.value)
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    with_fallback = interface.get_signing_serializer(app)
    assert with_fallback is not rotated
    assert with_fallback.loads(cookie.value)["csrf_token"]


def test_ensure_sync_remembers_plain_callables_only(app: Any) -> None:
    def plain() -> str:
        return "x"

    async def coroutine() -> str:
        return "y"

    assert app.ensure_sync(plain) is plain
    assert plain in app._plain_callables
    assert app.ensure_sync(plain) is plain
    try:
        wrapped = app.ensure_sync(coroutine)
    except RuntimeError:  # Flask without its async extra
        wrapped = None
    assert wrapped is not coroutine and coroutine not in app._plain_callables
