"""A thin wrapper that times every call an adapter makes to its gateway.

`InstrumentedGateway(adapter)` behaves exactly like the adapter (it forwards every
attribute) and records, per gateway and operation, the call's duration and its errors
(`kassa_gateway_request_duration_seconds`, `kassa_gateway_errors_total{code}`). Local
work (verify_webhook, interpret, redact) is forwarded untimed: it never leaves the box.

Composition with the resilience layer (app/gateways/resilience.py, which retries and
breaks circuits around the adapter): app.observability.init_app uses
`instrument_in_place(adapter, observe)` on the innermost adapter, so every attempt is
timed (a retried call counts twice, with its error code) and the chain stays
`ResilientGateway(adapter)`: code that unwraps `.inner` and checks the adapter's type
keeps working. Wrapping with `InstrumentedGateway` instead times whole calls, retries
included; put it outside: `InstrumentedGateway(ResilientGateway(adapter))` (and then
`.inner` is no longer the resilience layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.gateways.base import GatewayError

TIMED_OPERATIONS = (
    "create_checkout",
    "retrieve",
    "confirm_return",
    "cancel_checkout",
    "refund",
    "capture",
    "void_payment",
)


class InstrumentedGateway:
    """Forwards to `inner`, timing the calls that go over the network."""

    def __init__(self, inner: Any, observe: Callable[[str, str, float, str | None], None]) -> None:
        self.inner = inner
        self._observe = observe
        self.name: str = inner.name
        self.display_name: str = inner.display_name

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for attributes not set on the wrapper: everything else of the adapter.
        value = getattr(self.inner, attribute)
        if attribute in TIMED_OPERATIONS and callable(value):
            return self._timed(attribute, value)
        return value

    def _timed(self, operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                result = call(*args, **kwargs)
            except GatewayError as exc:
                self._observe(self.name, operation, time.perf_counter() - start, exc.code)
                raise
            except Exception:
                self._observe(self.name, operation, time.perf_counter() - start, "exception")
                raise
            self._observe(self.name, operation, time.perf_counter() - start, None)
            return result

        return timed

    def __repr__(self) -> str:
        return f"InstrumentedGateway({self.inner!r})"


def instrument_in_place(
    adapter: Any, observe: Callable[[str, str, float, str | None], None]
) -> bool:
    """Time the adapter's network calls by shadowing its bound methods on the instance.

    Returns False when the adapter cannot take instance attributes (then wrap it instead).
    """
    if getattr(adapter, "_kassa_instrumented", False):
        return True
    timer = InstrumentedGateway(adapter, observe)
    try:
        for operation in TIMED_OPERATIONS:
            method = getattr(adapter, operation, None)
            if callable(method):
                setattr(adapter, operation, timer._timed(operation, method))
        adapter._kassa_instrumented = True
    except (AttributeError, TypeError):
        return False
    return True
