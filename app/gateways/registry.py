"""Which gateways are active, built once per app from its settings.

A gateway is active when its credentials are configured; the sandbox is active when
enabled (default) and always when no real gateway is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app

from app.gateways.base import Gateway
from app.payments.errors import GatewayNotAvailable


def _sandbox(config: dict[str, Any], app: Flask) -> Gateway | None:
    from app.gateways.sandbox import SandboxGateway

    return SandboxGateway.from_app(app)


# name -> factory returning the gateway, or None when not configured
FACTORIES: dict[str, Callable[[dict[str, Any], Flask], Gateway | None]] = {
    "sandbox": _sandbox,
}

ORDER = ("stripe", "razorpay", "sandbox")


def init_app(app: Flask) -> None:
    gateways: dict[str, Gateway] = {}
    for name in ORDER:
        factory = FACTORIES.get(name)
        if factory is None or (name == "sandbox" and not app.config.get("SANDBOX_ENABLED")):
            continue
        gateway = factory(app.config, app)
        if gateway is not None:
            gateways[name] = gateway
    if not gateways:
        gateways["sandbox"] = _sandbox(app.config, app)  # type: ignore[assignment]
    # Every adapter gets timeouts, bounded retries and a circuit breaker (resilience.py).
    from app.gateways.resilience import Policy, ResilientGateway

    policy = Policy.from_config(app.config)
    app.extensions["kassa_gateways"] = {
        name: ResilientGateway(gw, policy) for name, gw in gateways.items()}


def gateways() -> dict[str, Gateway]:
    return current_app.extensions["kassa_gateways"]  # type: ignore[no-any-return]


def get_gateway(name: str) -> Gateway:
    try:
        return gateways()[name]
    except KeyError:
        raise GatewayNotAvailable(f"The payment method {name!r} is not available.",
                                  details=[{"field": "gateway", "message": "not configured"}]
                                  ) from None


def choices() -> list[tuple[str, str]]:
    """(name, label) of the active gateways, for forms."""
    return [(name, gw.display_name) for name, gw in gateways().items()]
