"""How a payment method is named to people: wallets for what they are, not only "card".

Adapters record the safe facts (app/gateways/*: method, brand, last4, wallet, vpa); this
turns them into one label for the dashboard, the API and receipts: "Apple Pay (Visa ••••
4242)", "Link", "UPI (asha@okbank)", "Paytm wallet", "PayPal".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WALLET_NAMES = {
    # Stripe: payment_method_details.card.wallet.type, and Link as its own method
    "apple_pay": "Apple Pay",
    "google_pay": "Google Pay",
    "link": "Link",
    "samsung_pay": "Samsung Pay",
    "masterpass": "Masterpass",
    "visa_checkout": "Visa Checkout",
    "amex_express_checkout": "Amex Express Checkout",
    # PayPal
    "paypal": "PayPal",
    "venmo": "Venmo",
    # Razorpay wallets
    "paytm": "Paytm",
    "phonepe": "PhonePe",
    "amazonpay": "Amazon Pay",
    "mobikwik": "MobiKwik",
    "freecharge": "Freecharge",
    "airtelmoney": "Airtel Money",
    "jiomoney": "JioMoney",
    "olamoney": "Ola Money",
}
BRAND_NAMES = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "american_express": "American Express",
    "discover": "Discover",
    "diners": "Diners Club",
    "jcb": "JCB",
    "unionpay": "UnionPay",
    "rupay": "RuPay",
    "maestro": "Maestro",
}


# Wallets whose name says it all (the rest read "<name> wallet", as Razorpay's do).
_NAMED_ALONE = frozenset(
    {
        "apple_pay",
        "google_pay",
        "link",
        "samsung_pay",
        "masterpass",
        "visa_checkout",
        "amex_express_checkout",
        "paypal",
        "venmo",
    }
)


def _card(details: Mapping[str, Any]) -> str:
    brand = str(details.get("brand") or "").strip()
    name = BRAND_NAMES.get(brand.lower().replace(" ", "_"), brand.capitalize() if brand else "")
    last4 = details.get("last4")
    if name and last4:
        return f"{name} •••• {last4}"
    if last4:
        return f"Card •••• {last4}"
    return name or ("Card" if details.get("method") == "card" else "")


def describe(details: Mapping[str, Any] | None) -> str:
    """One human label for a payment's recorded method; "" when nothing is known."""
    if not details:
        return ""
    wallet = str(details.get("wallet") or "").strip().lower()
    method = str(details.get("method") or "").strip().lower()
    card = _card(details)
    if wallet:
        name = WALLET_NAMES.get(wallet, wallet.replace("_", " ").title())
        if card and method == "card":
            return f"{name} ({card})"  # Apple Pay (Visa •••• 4242)
        if method == "wallet" and wallet not in _NAMED_ALONE:
            return f"{name} wallet"  # Razorpay's wallets: Paytm wallet
        return name
    if method == "upi" or details.get("vpa"):
        vpa = details.get("vpa")
        return f"UPI ({vpa})" if vpa else "UPI"
    if method == "netbanking":
        bank = details.get("bank")
        return f"Netbanking ({bank})" if bank else "Netbanking"
    if method == "emi":
        return f"EMI ({card})" if card else "EMI"
    return card or method.replace("_", " ").capitalize()
