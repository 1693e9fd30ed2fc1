"""Razorpay's optional `retrieve_refund` (GET /refunds/{id}) over real HTTP against the fake:
how reconciliation settles a normal-speed refund whose refund.processed webhook was lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.gateways.base import (
    CheckoutRequest,
    GatewayError,
    LineItem,
    PaymentRef,
    RefundRequest,
    RetrievesRefunds,
)
from app.gateways.razorpay import RazorpayGateway
from app.gateways.resilience import Policy, ResilientGateway
from app.models.enums import RefundStatus
from tests.fakes.razorpay_api import FakeRazorpay

OURS = "pay_ours0000000000000001"


def _captured(gw: RazorpayGateway, fake: FakeRazorpay) -> tuple[str, str]:
    session = gw.create_checkout(
        CheckoutRequest(
            payment_id=OURS,
            order_id="ord_ours0000000000000001",
            amount=29500,
            currency="INR",
            line_items=(LineItem("Tea", 29500, 1),),
            customer_email="asha@example.com",
            customer_name="Asha",
            success_url="http://shop.test/return",
            cancel_url="http://shop.test/cancel",
            idempotency_key=f"checkout-{OURS}",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
    )
    return session.reference, fake.add_payment(session.reference)["id"]


def test_retrieve_refund_follows_a_pending_refund(gw: RazorpayGateway, fake: FakeRazorpay) -> None:
    assert isinstance(gw, RetrievesRefunds)
    assert ResilientGateway(gw, Policy()).can_retrieve_refunds
    order_id, rzp_payment = _captured(gw, fake)
    result = gw.refund(
        RefundRequest(
            refund_id="rfd_first000000000000001",
            payment_id=OURS,
            reference=order_id,
            gateway_payment_id=rzp_payment,
            amount=10000,
            currency="INR",
            reason="damaged",
            idempotency_key="key-rfd_first000000000000001",
        )
    )
    assert result.status == RefundStatus.PENDING
    ref = PaymentRef(OURS, order_id, rzp_payment)

    update = gw.retrieve_refund(ref, result.gateway_refund_id)
    assert (
        update.gateway_refund_id,
        update.refund_id,
        update.status,
        update.amount,
        update.currency,
        update.reason,
    ) == (
        result.gateway_refund_id,
        "rfd_first000000000000001",
        RefundStatus.PENDING,
        10000,
        "INR",
        "damaged",
    )
    assert update.ref == ref
    assert fake.calls("GET", f"/v1/refunds/{result.gateway_refund_id}")

    fake.set_refund_status(result.gateway_refund_id, "processed")
    assert gw.retrieve_refund(ref, result.gateway_refund_id).status == RefundStatus.SUCCEEDED
    fake.set_refund_status(result.gateway_refund_id, "failed")
    assert gw.retrieve_refund(ref, result.gateway_refund_id).status == RefundStatus.FAILED


def test_dashboard_refund_names_the_callers_payment(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, rzp_payment = _captured(gw, fake)
    refund = fake.dashboard_refund(rzp_payment, 5000)
    update = gw.retrieve_refund(PaymentRef(OURS, order_id, rzp_payment), refund["id"])
    assert (update.refund_id, update.amount, update.ref.payment_id) == (None, 5000, OURS)


def test_refund_of_another_payment_or_unknown_is_refused(
    gw: RazorpayGateway, fake: FakeRazorpay
) -> None:
    order_id, rzp_payment = _captured(gw, fake)
    refund = fake.dashboard_refund(rzp_payment, 5000)
    with pytest.raises(GatewayError) as err:
        gw.retrieve_refund(PaymentRef(OURS, order_id, "pay_other000000000001"), refund["id"])
    assert err.value.code == "invalid_request"
    with pytest.raises(GatewayError):
        gw.retrieve_refund(PaymentRef(OURS, order_id, rzp_payment), "rfnd_missing0000001")
