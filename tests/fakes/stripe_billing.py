"""Stripe Billing for the fake Stripe (tests/fakes/stripe_api.py): Products, recurring
Prices, Checkout in `mode=subscription`, Subscriptions (retrieve, update
cancel_at_period_end, cancel), Invoices (list, with `payments` expandable), and billing
portal sessions, in the shapes of API version 2025-03-31 and later (the SDK's): a
subscription's period is on its items, an invoice names its subscription under
`parent.subscription_details` and its charge under `payments`.

The gateway's clock is the test's: `renew(sub)` ends the current period and bills the
next (paid, or declined with a retry planned), `retry(sub)` retries an open invoice, and
`portal_cancel(sub)` is a customer cancelling in the billing portal. Each emits the events
Stripe does."""

from __future__ import annotations

import secrets
import time
from typing import Any

DAY = 86400
INTERVAL_SECONDS = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}
RETRY_AFTER = 3 * DAY  # Smart Retries' first retry, roughly


class BillingMixin:
    """Mixed into FakeStripe: its lock, ids, errors, events and payment intents."""

    products: dict[str, dict[str, Any]]
    prices: dict[str, dict[str, Any]]
    subscriptions: dict[str, dict[str, Any]]
    invoices: dict[str, dict[str, Any]]
    customers: dict[str, dict[str, Any]]

    def _billing_init(self) -> None:
        self.products, self.prices, self.subscriptions = {}, {}, {}
        self.invoices, self.customers = {}, {}
        self.failures_left: dict[str, int] = {}
        self.prorations: list[dict[str, Any]] = []

    def billing_routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"^/v1/products$", self._create_product),
            ("POST", r"^/v1/prices$", self._create_price),
            ("GET", r"^/v1/prices/([^/]+)$", self._get_price),
            ("GET", r"^/v1/subscriptions/([^/]+)$", self._get_subscription),
            ("POST", r"^/v1/subscriptions/([^/]+)$", self._update_subscription),
            ("DELETE", r"^/v1/subscriptions/([^/]+)$", self._cancel_subscription),
            ("GET", r"^/v1/invoices$", self._list_invoices),
            ("GET", r"^/v1/invoices/([^/]+)$", self._get_invoice),
            ("POST", r"^/v1/billing_portal/sessions$", self._create_portal_session),
        ]

    # ------------------------------------------------------------------ catalog
    def _create_product(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("name"):
            raise self._error(400, "Missing required param: name.", param="name")
        pid = self._new_id("prod_")
        product = {
            "id": pid,
            "object": "product",
            "active": True,
            "created": int(time.time()),
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "name": p["name"],
        }
        self.products[pid] = product
        return product

    def _create_price(self, p: dict[str, Any]) -> dict[str, Any]:
        product = p.get("product")
        if product not in self.products:
            raise self._missing(str(product), "product")
        recurring = p.get("recurring") or {}
        interval = recurring.get("interval")
        if interval not in INTERVAL_SECONDS:
            raise self._error(400, "Invalid recurring[interval].", param="recurring[interval]")
        count = int(recurring.get("interval_count") or 1)
        if count * INTERVAL_SECONDS[interval] > 3 * 365 * DAY or count < 1:
            raise self._error(
                400,
                "The maximum billing interval is three years.",
                param="recurring[interval_count]",
            )
        unit = self._int(p, "unit_amount")
        price_id = self._new_id("price_")
        price = {
            "id": price_id,
            "object": "price",
            "active": True,
            "currency": str(p.get("currency", "")).lower(),
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "product": product,
            "recurring": {
                "interval": interval,
                "interval_count": count,
                "usage_type": "licensed",
            },
            "type": "recurring",
            "unit_amount": unit,
        }
        self.prices[price_id] = price
        return price

    def _get_price(self, p: dict[str, Any], price_id: str) -> dict[str, Any]:
        if price_id not in self.prices:
            raise self._missing(price_id, "price")
        return self.prices[price_id]

    # ------------------------------------------------------------------ checkout
    def create_subscription_session(self, p: dict[str, Any]) -> dict[str, Any]:
        items = p.get("line_items")
        if not isinstance(items, list) or len(items) != 1:
            raise self._error(400, "line_items is required", param="line_items")
        price_id = items[0].get("price")
        price = self.prices.get(price_id or "")
        if price is None:
            raise self._missing(str(price_id), "price")
        if price["type"] != "recurring":
            raise self._error(400, "mode=subscription needs a recurring price.")
        if not p.get("success_url"):
            raise self._error(400, "success_url is required", param="success_url")
        quantity = int(items[0].get("quantity") or 1)
        sid = self._new_id("cs_test_")
        now = int(time.time())
        session = {
            "id": sid,
            "object": "checkout.session",
            "amount_subtotal": price["unit_amount"] * quantity,
            "amount_total": price["unit_amount"] * quantity,
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"),
            "created": now,
            "currency": price["currency"],
            "customer": None,
            "customer_email": p.get("customer_email"),
            "expires_at": now + DAY,
            "invoice": None,
            "livemode": False,
            "metadata": dict(p.get("metadata") or {}),
            "mode": "subscription",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": p["success_url"],
            "ui_mode": "hosted",
            "url": f"{self.base_url}/pay/{sid}",
        }
        self.sessions[sid] = session
        self._extra[sid] = {
            "price": price_id,
            "quantity": quantity,
            "subscription_data": p.get("subscription_data") or {},
        }
        return session

    def complete_subscription_session(self, sid: str, *, decline: bool = False) -> dict[str, Any]:
        """The customer subscribes on the hosted page; returns the subscription."""
        with self.lock:
            session = self.sessions[sid]
            extra = self._extra[sid]
            data = extra["subscription_data"]
            price = self.prices[extra["price"]]
            now = int(time.time())
            customer = self._new_id("cus_")
            self.customers[customer] = {
                "id": customer,
                "object": "customer",
                "email": session["customer_email"],
            }
            trial_days = int(data.get("trial_period_days") or 0)
            sub_id = self._new_id("sub_")
            period = INTERVAL_SECONDS[price["recurring"]["interval"]] * int(
                price["recurring"]["interval_count"]
            )
            end = now + (trial_days * DAY if trial_days else period)
            sub = {
                "id": sub_id,
                "object": "subscription",
                "billing_cycle_anchor": end if trial_days else now,
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "cancellation_details": {"comment": None, "feedback": None, "reason": None},
                "collection_method": "charge_automatically",
                "created": now,
                "currency": price["currency"],
                "customer": customer,
                "ended_at": None,
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": self._new_id("si_"),
                            "object": "subscription_item",
                            "current_period_start": now,
                            "current_period_end": end,
                            "price": dict(price),
                            "quantity": extra["quantity"],
                            "subscription": sub_id,
                        }
                    ],
                    "has_more": False,
                },
                "latest_invoice": None,
                "livemode": False,
                "metadata": dict(data.get("metadata") or {}),
                "start_date": now,
                "status": "trialing" if trial_days else "incomplete",
                "trial_end": end if trial_days else None,
                "trial_start": now if trial_days else None,
                "_period": period,
            }
            self.subscriptions[sub_id] = sub
            session.update(
                {
                    "status": "complete",
                    "subscription": sub_id,
                    "customer": customer,
                    "payment_status": "no_payment_required" if trial_days else "unpaid",
                }
            )
            self.emit("customer.subscription.created", self._sub_public(sub))
            if not trial_days:
                invoice = self._new_invoice(sub, now, end)
                if decline:
                    self._decline(sub, invoice, now)
                    return self._sub_public(sub)
                self._pay(sub, invoice)
                session["payment_status"] = "paid"
                session["invoice"] = invoice["id"]
            self.emit("checkout.session.completed", session)
            if not trial_days:
                self.emit("customer.subscription.updated", self._sub_public(sub))
            return self._sub_public(sub)

    # ------------------------------------------------------------------ clock
    def renew(self, sub_id: str, *, fail: bool = False) -> dict[str, Any]:
        """The current period ends: end the subscription (cancel_at_period_end) or bill
        the next period."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            item = sub["items"]["data"][0]
            start = item["current_period_end"]
            if sub["cancel_at_period_end"]:
                sub.update({"status": "canceled", "ended_at": start})
                self.emit("customer.subscription.deleted", self._sub_public(sub))
                return self._sub_public(sub)
            item["current_period_start"] = start
            item["current_period_end"] = start + sub["_period"]
            if sub["status"] == "trialing":
                sub["status"] = "active"
            invoice = self._new_invoice(sub, start, start + sub["_period"])
            if fail:
                self._decline(sub, invoice, int(time.time()))
            else:
                self._pay(sub, invoice)
                self.emit("customer.subscription.updated", self._sub_public(sub))
            return self._sub_public(sub)

    def retry(self, sub_id: str, *, succeed: bool = True) -> dict[str, Any]:
        with self.lock:
            sub = self.subscriptions[sub_id]
            invoice = self.invoices[sub["latest_invoice"]]
            if succeed:
                self._pay(sub, invoice)
                self.emit("customer.subscription.updated", self._sub_public(sub))
            else:
                self._decline(sub, invoice, int(time.time()))
            return self._sub_public(sub)

    def portal_cancel(self, sub_id: str) -> dict[str, Any]:
        """The customer cancels in the billing portal (at the period's end, its default)."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            sub.update(
                {
                    "cancel_at_period_end": True,
                    "cancel_at": sub["items"]["data"][0]["current_period_end"],
                    "canceled_at": int(time.time()),
                    "cancellation_details": {
                        "comment": None,
                        "feedback": None,
                        "reason": "cancellation_requested",
                    },
                }
            )
            self.emit("customer.subscription.updated", self._sub_public(sub))
            return self._sub_public(sub)

    def _new_invoice(self, sub: dict[str, Any], start: int, end: int) -> dict[str, Any]:
        item = sub["items"]["data"][0]
        amount = item["price"]["unit_amount"] * item["quantity"]
        invoice_id = self._new_id("in_")
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "amount_due": amount,
            "amount_paid": 0,
            "amount_remaining": amount,
            "attempt_count": 0,
            "billing_reason": "subscription_create"
            if not sub["latest_invoice"]
            else "subscription_cycle",
            "created": int(time.time()),
            "currency": sub["currency"],
            "customer": sub["customer"],
            "lines": {
                "object": "list",
                "data": [
                    {
                        "object": "line_item",
                        "amount": amount,
                        "period": {"start": start, "end": end},
                    }
                ],
                "has_more": False,
            },
            "livemode": False,
            "next_payment_attempt": None,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": sub["id"],
                    "metadata": dict(sub["metadata"]),
                },
            },
            "payments": {"object": "list", "data": [], "has_more": False},
            "period_start": start,
            "period_end": end,
            "status": "open",
        }
        self.invoices[invoice_id] = invoice
        sub["latest_invoice"] = invoice_id
        return invoice

    def _pay(self, sub: dict[str, Any], invoice: dict[str, Any]) -> None:
        pi = {
            "id": self._new_id("pi_"),
            "object": "payment_intent",
            "amount": invoice["amount_due"],
            "amount_received": invoice["amount_due"],
            "capture_method": "automatic",
            "currency": invoice["currency"],
            "latest_charge": None,
            "metadata": {},
            "status": "succeeded",
        }
        self.payment_intents[pi["id"]] = pi
        self._new_charge(pi, "visa", "4242", True)
        invoice.update(
            {
                "status": "paid",
                "amount_paid": invoice["amount_due"],
                "amount_remaining": 0,
                "attempt_count": invoice["attempt_count"] + 1,
                "next_payment_attempt": None,
            }
        )
        invoice["payments"]["data"] = [
            {
                "id": self._new_id("inpay_"),
                "object": "invoice_payment",
                "invoice": invoice["id"],
                "is_default": True,
                "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
                "status": "paid",
            }
        ]
        sub["status"] = "active"
        self.emit("invoice.paid", invoice)

    def _decline(self, sub: dict[str, Any], invoice: dict[str, Any], now: int) -> None:
        invoice["attempt_count"] += 1
        retry = invoice["attempt_count"] < 4
        invoice["next_payment_attempt"] = now + RETRY_AFTER if retry else None
        if sub["status"] != "incomplete":
            sub["status"] = "past_due" if retry else "unpaid"
        self.emit("invoice.payment_failed", invoice)
        self.emit("customer.subscription.updated", self._sub_public(sub))

    # ------------------------------------------------------------------ API
    def _sub_public(self, sub: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in sub.items() if not k.startswith("_")}

    def _get_subscription(self, p: dict[str, Any], sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise self._missing(sub_id, "id")
        return self._sub_public(sub)

    def _update_subscription(self, p: dict[str, Any], sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise self._missing(sub_id, "id")
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise self._error(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        if "cancel_at_period_end" in p:
            flag = str(p["cancel_at_period_end"]).lower() == "true"
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"] if flag else None
            sub["canceled_at"] = int(time.time()) if flag else None
        if "metadata" in p:
            sub["metadata"].update(p["metadata"] or {})
        for change in p.get("items") or []:
            item = sub["items"]["data"][0]
            if change.get("id") != item["id"]:
                raise self._missing(str(change.get("id")), "items[0][id]")
            price = self.prices.get(change.get("price") or "")
            if price is None:
                raise self._missing(str(change.get("price")), "items[0][price]")
            item["price"] = dict(price)
            self.prorations.append(
                {
                    "subscription": sub_id,
                    "behavior": p.get("proration_behavior", "create_prorations"),
                }
            )
        self.emit("customer.subscription.updated", self._sub_public(sub))
        return self._sub_public(sub)

    def _cancel_subscription(self, p: dict[str, Any], sub_id: str) -> dict[str, Any]:
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise self._missing(sub_id, "id")
        if sub["status"] == "canceled":
            raise self._error(400, f"No such subscription: '{sub_id}'", code="resource_missing")
        now = int(time.time())
        sub.update({"status": "canceled", "canceled_at": now, "ended_at": now})
        self.emit("customer.subscription.deleted", self._sub_public(sub))
        return self._sub_public(sub)

    def _list_invoices(self, p: dict[str, Any]) -> dict[str, Any]:
        data = sorted(self.invoices.values(), key=lambda i: i["created"], reverse=True)
        if p.get("subscription"):
            data = [
                i
                for i in data
                if i["parent"]["subscription_details"]["subscription"] == p["subscription"]
            ]
        if p.get("status"):
            data = [i for i in data if i["status"] == p["status"]]
        limit = min(int(p.get("limit", 10)), 100)
        return {
            "object": "list",
            "data": data[:limit],
            "has_more": len(data) > limit,
            "url": "/v1/invoices",
        }

    def _get_invoice(self, p: dict[str, Any], invoice_id: str) -> dict[str, Any]:
        if invoice_id not in self.invoices:
            raise self._missing(invoice_id, "invoice")
        return self.invoices[invoice_id]

    def _create_portal_session(self, p: dict[str, Any]) -> dict[str, Any]:
        customer = p.get("customer")
        if customer not in self.customers:
            raise self._missing(str(customer), "customer")
        bps = self._new_id("bps_")
        return {
            "id": bps,
            "object": "billing_portal.session",
            "customer": customer,
            "livemode": False,
            "return_url": p.get("return_url"),
            "url": f"{self.base_url}/p/session/{bps}",
        }

    def _error(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> Exception:
        from tests.fakes.stripe_api import StripeFakeError

        return StripeFakeError(status, "invalid_request_error", message, param=param, code=code)

    # provided by FakeStripe
    lock: Any
    sessions: dict[str, dict[str, Any]]
    payment_intents: dict[str, dict[str, Any]]
    _extra: dict[str, dict[str, Any]]
    base_url: str

    def emit(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]: ...
    def _new_id(self, prefix: str) -> str: ...
    def _missing(self, object_id: str, param: str = "id") -> Exception: ...
    def _int(self, params: dict[str, Any], key: str, where: str | None = None) -> int: ...
    def _new_charge(
        self, pi: dict[str, Any], brand: str, last4: str, captured: bool, wallet: str | None = None
    ) -> dict[str, Any]: ...


_ = secrets
