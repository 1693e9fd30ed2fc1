"""Failed sign-in throttling that slows guessing without locking the owner out.

Only failures count (a wrong password, a wrong 2FA code). Three counters:

- per account *and* client address: LOGIN_LIMIT_ACCOUNT ("5 per 15 minutes") free
  failures, then every further failure pauses that pair for twice as long as the last
  (30 s after the fifth, then 1 min, 2 min, ... up to LOGIN_PAUSE_MAX_SECONDS). Someone guessing the owner's
  password from elsewhere pauses only themselves; the owner, at their own address, signs in.
  Each wrong password says how many tries are left before a pause.
- per client address over all accounts: LOGIN_LIMIT_ADDRESS, against spraying one
  password over many accounts.
- per account from browsers that have never signed in to it (no device cookie):
  LOGIN_LIMIT_ACCOUNT_UNKNOWN_DEVICES, against guessing from many addresses. A browser that
  signed in to the account before carries a signed device cookie and is not held by this
  one, so even a distributed guesser cannot keep the owner out (the OWASP "device cookie"
  defence). Forgotten passwords have their own way back: a reset link by email.

A success clears the account-and-address counters. This is a security control, on even
when RATELIMIT_ENABLED is off (LOGIN_THROTTLE_ENABLED=false turns it off).

Counts live in the rate limiter's storage (RATELIMIT_STORAGE_URI: by default the app's
database, or Redis when REDIS_URL is set, so every worker and instance shares them; see
app/ratelimit_store.py). Account keys are hashes: the store never
holds an email address. Behind a proxy, the address is only right with ProxyFix set up.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import cast

from flask import Flask, current_app, request
from flask_babel import gettext as _gettext
from flask_babel import ngettext as _ngettext
from itsdangerous import BadSignature, URLSafeSerializer
from limits import RateLimitItem, parse, storage, strategies
from werkzeug.wrappers import Response

DEVICE_COOKIE = "kassa_device"
DEVICE_COOKIE_DAYS = 180
FIRST_PAUSE_SECONDS = 30


def gettext(message: str, **variables: object) -> str:
    return str(_gettext(message, **variables))


def ngettext(singular: str, plural: str, num: int, **variables: object) -> str:
    return str(_ngettext(singular, plural, num, **variables))


def _wait_words(seconds: int) -> str:
    if seconds < 60:
        return ngettext("%(num)d second", "%(num)d seconds", seconds)
    minutes = max(1, math.ceil(seconds / 60))
    return ngettext("%(num)d minute", "%(num)d minutes", minutes)


@dataclass(frozen=True)
class Blocked:
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        return gettext(
            "Too many failed sign-in attempts. For your security, signing in from here is "
            "paused; try again in %(wait)s, or reset your password.",
            wait=_wait_words(self.retry_after),
        )


@dataclass(frozen=True)
class Failure:
    """What the customer of the sign-in form is told after a wrong password."""

    tries_left: int  # before the next pause; 0 when this failure started one
    pause: int  # seconds the next pause lasts (or the one just started)

    @property
    def message(self) -> str:
        if self.tries_left <= 0:
            return gettext(
                "Wrong email or password. Signing in from here is paused for %(wait)s; "
                "you can also reset your password.",
                wait=_wait_words(self.pause),
            )
        return ngettext(
            "Wrong email or password. %(num)d more try before signing in pauses for %(wait)s.",
            "Wrong email or password. %(num)d more tries before signing in pauses for %(wait)s.",
            self.tries_left,
            wait=_wait_words(self.pause),
        )


class LoginThrottle:
    def __init__(self, app: Flask) -> None:
        from app.ratelimit_store import default_storage_uri

        uri = default_storage_uri(
            app.config.get("RATELIMIT_STORAGE_URI"), app.config.get("REDIS_URL")
        )
        # A URI names a synchronous store here (memory://, redis://, a database): never async.
        self.storage: storage.Storage = cast(storage.Storage, storage.storage_from_string(uri))
        self.limiter: strategies.RateLimiter
        if isinstance(self.storage, storage.MovingWindowSupport):
            self.limiter = strategies.MovingWindowRateLimiter(self.storage)
        else:
            self.limiter = strategies.FixedWindowRateLimiter(self.storage)
        self.per_pair: RateLimitItem = parse(
            str(app.config.get("LOGIN_LIMIT_ACCOUNT") or "5 per 15 minutes")
        )
        self.per_address: RateLimitItem = parse(
            str(app.config.get("LOGIN_LIMIT_ADDRESS") or "20 per 15 minutes")
        )
        self.per_account: RateLimitItem = parse(
            str(app.config.get("LOGIN_LIMIT_ACCOUNT_UNKNOWN_DEVICES") or "100 per hour")
        )
        self.max_pause = int(app.config.get("LOGIN_PAUSE_MAX_SECONDS") or 900)
        self.enabled = bool(app.config.get("LOGIN_THROTTLE_ENABLED", True))

    # --- keys --------------------------------------------------------------------------

    @staticmethod
    def _account(email: str) -> str:
        return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]

    @staticmethod
    def _address() -> str:
        return request.remote_addr or "unknown"

    def _pair(self, email: str) -> str:
        return f"{self._account(email)}/{self._address()}"

    def _failures_key(self, email: str) -> str:
        return f"kassa-login-failures/{self._pair(email)}"

    def _pause_key(self, email: str) -> str:
        return f"kassa-login-pause/{self._pair(email)}"

    def _window_limits(self, email: str) -> list[tuple[RateLimitItem, str, str]]:
        limits = [(self.per_address, "kassa-login-address", self._address())]
        if not known_device(email):
            limits.append((self.per_account, "kassa-login-account", self._account(email)))
        return limits

    def _pause_after(self, failures: int) -> int:
        """The pause started by the given failure count (0 while still free)."""
        over = failures - self.per_pair.amount + 1  # the last free failure starts a pause
        if over <= 0:
            return 0
        return int(min(self.max_pause, FIRST_PAUSE_SECONDS * 2 ** min(over - 1, 20)))

    # --- the three calls the sign-in pages make ----------------------------------------

    def check(self, email: str) -> Blocked | None:
        """None when a sign-in attempt may go ahead."""
        if not self.enabled:
            return None
        pause = self._pause_key(email)
        if self.storage.get(pause) > 0:
            left = self.storage.get_expiry(pause) - time.time()
            return Blocked(max(1, math.ceil(left)))
        for item, scope, key in self._window_limits(email):
            if not self.limiter.test(item, scope, key):
                stats = self.limiter.get_window_stats(item, scope, key)
                return Blocked(max(1, int(stats.reset_time - time.time())))
        return None

    def failed(self, email: str) -> Failure | None:
        if not self.enabled:
            return None
        for item, scope, key in self._window_limits(email):
            self.limiter.hit(item, scope, key)
        # The count outlives the free window by the longest pause, so a guesser who waits
        # out one pause and goes on starts the next, doubled.
        failures = self.storage.incr(
            self._failures_key(email), self.per_pair.get_expiry() + self.max_pause
        )
        pause = self._pause_after(failures)
        if pause:
            key = self._pause_key(email)
            self.storage.clear(key)
            self.storage.incr(key, pause)
            return Failure(tries_left=0, pause=pause)
        return Failure(
            tries_left=self.per_pair.amount - failures,
            pause=self._pause_after(self.per_pair.amount),
        )

    def succeeded(self, email: str) -> None:
        if self.enabled:
            self.storage.clear(self._failures_key(email))
            self.storage.clear(self._pause_key(email))

    def forget_account(self, email: str) -> None:
        """After a password reset: the account starts afresh from this address and from
        unknown devices (the new password is not what anyone was guessing)."""
        if self.enabled:
            self.succeeded(email)
            self.limiter.clear(self.per_account, "kassa-login-account", self._account(email))


# --- the device cookie ----------------------------------------------------------------


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key or "", salt="kassa-login-device")


def known_device(email: str) -> bool:
    """True when this browser signed in to this account before (a signed cookie)."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return False
    try:
        accounts = _serializer().loads(raw)
    except BadSignature:
        return False
    return isinstance(accounts, list) and LoginThrottle._account(email) in accounts


def remember_device(response: Response, email: str) -> Response:
    """Mark this browser as one the account's owner uses (after a correct password)."""
    accounts: list[str] = []
    raw = request.cookies.get(DEVICE_COOKIE)
    if raw:
        try:
            loaded = _serializer().loads(raw)
            if isinstance(loaded, list):
                accounts = [str(a) for a in loaded][-4:]
        except BadSignature:
            pass
    account = LoginThrottle._account(email)
    if account not in accounts:
        accounts.append(account)
    response.set_cookie(
        DEVICE_COOKIE,
        _serializer().dumps(accounts),
        max_age=DEVICE_COOKIE_DAYS * 86400,
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        httponly=True,
        samesite="Lax",
        path="/auth/",
    )
    return response


def init_app(app: Flask) -> None:
    app.extensions["kassa_login_throttle"] = LoginThrottle(app)


def throttle() -> LoginThrottle:
    installed: LoginThrottle = current_app.extensions["kassa_login_throttle"]  # init_app
    return installed
