"""Failed sign-in throttling, per account and per client address.

Only failures count (a wrong password, a wrong 2FA code): past LOGIN_LIMIT_ACCOUNT
failures for one email (any case, any address) or LOGIN_LIMIT_ADDRESS from one address
("5 per 15 minutes"), further attempts are refused before the password is even checked,
with a message saying how long to wait. A success clears the account's count. This is a
security control, on even when RATELIMIT_ENABLED is off (LOGIN_THROTTLE_ENABLED=false
turns it off).

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
from limits import RateLimitItem, parse, storage, strategies


@dataclass(frozen=True)
class Blocked:
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return (
            f"Too many failed sign-in attempts. For your security, signing in is paused; "
            f"try again in {minutes} {unit}."
        )


class LoginThrottle:
    def __init__(self, app: Flask) -> None:
        uri = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
        self.storage = storage.storage_from_string(uri)
        self.limiter: strategies.RateLimiter
        if isinstance(self.storage, storage.MovingWindowSupport):
            self.limiter = strategies.MovingWindowRateLimiter(self.storage)
        else:
            self.limiter = strategies.FixedWindowRateLimiter(self.storage)
        self.per_account: RateLimitItem = parse(
            str(app.config.get("LOGIN_LIMIT_ACCOUNT") or "5 per 15 minutes")
        )
        self.per_address: RateLimitItem = parse(
            str(app.config.get("LOGIN_LIMIT_ADDRESS") or "20 per 15 minutes")
        )
        self.enabled = bool(app.config.get("LOGIN_THROTTLE_ENABLED", True))

    def _keys(self, email: str) -> list[tuple[RateLimitItem, str, str]]:
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return [
            (self.per_account, "kassa-login-account", account),
            (self.per_address, "kassa-login-address", request.remote_addr or "unknown"),
        ]

    def check(self, email: str) -> Blocked | None:
        """None when a sign-in attempt may go ahead."""
        if not self.enabled:
            return None
        for item, scope, key in self._keys(email):
            if not self.limiter.test(item, scope, key):
                stats = self.limiter.get_window_stats(item, scope, key)
                return Blocked(max(1, int(stats.reset_time - time.time())))
        return None

    def failed(self, email: str) -> None:
        if self.enabled:
            for item, scope, key in self._keys(email):
                self.limiter.hit(item, scope, key)

    def succeeded(self, email: str) -> None:
        if self.enabled:
            item, scope, key = self._keys(email)[0]
            self.limiter.clear(item, scope, key)


def init_app(app: Flask) -> None:
    app.extensions["kassa_login_throttle"] = LoginThrottle(app)


def throttle() -> LoginThrottle:
    return current_app.extensions["kassa_login_throttle"]  # type: ignore[no-any-return]
