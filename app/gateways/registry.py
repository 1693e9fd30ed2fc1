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


def _sandbox(config: dict[str, Any], app: Flask) -> Gateway:  # needs no settings
    from app.gateways.sandbox import SandboxGateway

    return SandboxGateway.from_app(app)


def _stripe(config: dict[str, Any], app: Flask) -> Gateway | None:
    """Active when both the secret key and the webhook secret are set."""
    if not (config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_WEBHOOK_SECRET")):
        if config.get("STRIPE_SECRET_KEY"):
            app.logger.warning("Stripe is off: STRIPE_WEBHOOK_SECRET is not set")
        return None
    from app.gateways.stripe import StripeGateway, check_key_safety

    check_key_safety(config["STRIPE_SECRET_KEY"], bool(app.debug or config.get("DEBUG")))
    gateway = StripeGateway.from_config(config)
    app.logger.info(
        "Stripe gateway active with %s keys%s",
        gateway.mode,
        f" (API base {config['STRIPE_API_BASE']})" if config.get("STRIPE_API_BASE") else "",
    )
    return gateway


def _razorpay(config: dict[str, Any], app: Flask) -> Gateway | None:
    """Active when the key id, key secret and webhook secret are all set."""
    from app.gateways.razorpay import RazorpayGateway, check_key_safety

    gateway = RazorpayGateway.from_config(config)
    if gateway is None:
        if config.get("RAZORPAY_KEY_ID"):
            app.logger.warning(
                "Razorpay is off: RAZORPAY_KEY_SECRET and RAZORPAY_WEBHOOK_SECRET are both needed"
            )
        return None
    check_key_safety(gateway.key_id, bool(app.debug or config.get("DEBUG")))
    app.logger.info(
        "Razorpay gateway active with %s keys%s",
        gateway.mode,
        f" (API base {config['RAZORPAY_API_BASE']})" if config.get("RAZORPAY_API_BASE") else "",
    )
    return gateway


def _paypal(config: dict[str, Any], app: Flask) -> Gateway | None:
    """Active when the client id, client secret and webhook id are all set."""
    from app.gateways.paypal import PayPalGateway, check_settings_safety

    gateway = PayPalGateway.from_config(config)
    if gateway is None:
        if config.get("PAYPAL_CLIENT_ID"):
            app.logger.warning(
                "PayPal is off: PAYPAL_CLIENT_SECRET and PAYPAL_WEBHOOK_ID are both needed"
            )
        return None
    check_settings_safety(gateway.api_base, bool(app.debug or config.get("DEBUG")))
    app.logger.info(
        "PayPal gateway active on its %s API (%s), webhooks verified %s",
        gateway.mode,
        gateway.api_base,
        gateway.verification,
    )
    return gateway


# name -> factory returning the gateway, or None when not configured
FACTORIES: dict[str, Callable[[dict[str, Any], Flask], Gateway | None]] = {
    "stripe": _stripe,
    "sandbox": _sandbox,
    "razorpay": _razorpay,
    "paypal": _paypal,
}

ORDER = ("stripe", "razorpay", "paypal", "sandbox")


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
        gateways["sandbox"] = _sandbox(app.config, app)
    # Every adapter gets timeouts, bounded retries and a circuit breaker (resilience.py).
    from app.gateways.resilience import Policy, ResilientGateway

    policy = Policy.from_config(app.config)
    app.extensions["kassa_gateways"] = {
        name: ResilientGateway(gw, policy) for name, gw in gateways.items()
    }


def gateways() -> dict[str, Gateway]:
    installed: dict[str, Gateway] = current_app.extensions["kassa_gateways"]  # init_app
    return installed


def get_gateway(name: str) -> Gateway:
    try:
        return gateways()[name]
    except KeyError:
        raise GatewayNotAvailable(
            f"The payment method {name!r} is not available.",
            details=[{"field": "gateway", "message": "not configured"}],
        ) from None


def choices() -> list[tuple[str, str]]:
    """(name, label) of the active gateways, for forms."""
    return [(name, gw.display_name) for name, gw in gateways().items()]
