"""Failed sign-in throttling, per account and per client address.

Only failures count (a wrong password, a wrong 2FA code): after LOGIN_FAILURES_PER_ACCOUNT
failures for one email, or LOGIN_FAILURES_PER_ADDRESS from one address, within
LOGIN_THROTTLE_MINUTES, further attempts are refused before the password is even checked,
with a message saying how long to wait. A success clears the account's count.

Counts live in the rate limiter's storage (RATELIMIT_STORAGE_URI: memory for one
process, Redis when several workers must agree). Account keys are hashes: the store never
holds an email address. Behind a proxy, the address is only right with ProxyFix set up.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from limits import RateLimitItemPerMinute, storage, strategies


@dataclass(frozen=True)
class Blocked:
    retry_after: int   # seconds

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return (f"Too many failed sign-in attempts. For your security, signing in is paused; "
                f"try again in {minutes} {unit}.")


class LoginThrottle:
    def __init__(self, app: Flask) -> None:
        uri = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
        self.storage = storage.storage_from_string(uri)
        self.limiter: strategies.RateLimiter
        if isinstance(self.storage, storage.MovingWindowSupport):
            self.limiter = strategies.MovingWindowRateLimiter(self.storage)
        else:
            self.limiter = strategies.FixedWindowRateLimiter(self.storage)
        minutes = int(app.config.get("LOGIN_THROTTLE_MINUTES", 15))
        self.per_account = RateLimitItemPerMinute(
            int(app.config.get("LOGIN_FAILURES_PER_ACCOUNT", 5)), minutes)
        self.per_address = RateLimitItemPerMinute(
            int(app.config.get("LOGIN_FAILURES_PER_ADDRESS", 20)), minutes)
        self.enabled = bool(app.config.get("LOGIN_THROTTLE_ENABLED", True))

    def _keys(self, email: str) -> list[tuple[object, str, str]]:
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return [(self.per_account, "kassa-login-account", account),
                (self.per_address, "kassa-login-address", request.remote_addr or "unknown")]

    def check(self, email: str) -> Blocked | None:
        """None when a sign-in attempt may go ahead."""
        if not self.enabled:
            return None
        for item, scope, key in self._keys(email):
            if not self.limiter.test(item, scope, key):   # type: ignore[arg-type]
                stats = self.limiter.get_window_stats(item, scope, key)   # type: ignore[arg-type]
                return Blocked(max(1, int(stats.reset_time - time.time())))
        return None

    def failed(self, email: str) -> None:
        if self.enabled:
            for item, scope, key in self._keys(email):
                self.limiter.hit(item, scope, key)   # type: ignore[arg-type]

    def succeeded(self, email: str) -> None:
        if self.enabled:
            item, scope, key = self._keys(email)[0]
            self.limiter.clear(item, scope, key)   # type: ignore[arg-type]


def init_app(app: Flask) -> None:
    app.extensions["kassa_login_throttle"] = LoginThrottle(app)


def throttle() -> LoginThrottle:
    return current_app.extensions["kassa_login_throttle"]  # type: ignore[no-any-return]
