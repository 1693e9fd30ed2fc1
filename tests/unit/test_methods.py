"""Payment methods are named for what they are: wallets included (issue 17, item 9)."""

from __future__ import annotations

import pytest

from app.methods import describe


@pytest.mark.parametrize(
    ("details", "label"),
    [
        ({"brand": "visa", "last4": "4242"}, "Visa •••• 4242"),
        (
            {"method": "card", "brand": "visa", "last4": "4242", "wallet": "apple_pay"},
            "Apple Pay (Visa •••• 4242)",
        ),
        (
            {"method": "card", "brand": "mastercard", "last4": "4444", "wallet": "google_pay"},
            "Google Pay (Mastercard •••• 4444)",
        ),
        ({"method": "wallet", "wallet": "link"}, "Link"),
        ({"method": "upi", "vpa": "asha@okbank"}, "UPI (asha@okbank)"),
        ({"method": "wallet", "wallet": "paytm"}, "Paytm wallet"),
        ({"method": "wallet", "wallet": "paypal", "payer_id": "P1"}, "PayPal"),
        ({"method": "wallet", "wallet": "venmo"}, "Venmo"),
        ({"method": "netbanking", "bank": "HDFC"}, "Netbanking (HDFC)"),
        ({"method": "card", "brand": "Visa", "last4": "1111", "issuer": "HDFC"}, "Visa •••• 1111"),
        (None, ""),
    ],
)
def test_labels(details: dict[str, str] | None, label: str) -> None:
    assert describe(details) == label
