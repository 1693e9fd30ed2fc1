"""Razorpay Subscriptions for the fake Razorpay API (tests/fakes/razorpay_api.py): Plans,
Subscriptions (create, list by plan, fetch, cancel now or at the cycle's end, pause,
resume, update the plan, cancel a scheduled update) and their Invoices (list by
subscription, fetch), in the shapes of Razorpay's published API reference.

The gateway's clock is the test's: `authenticate(sub)` is the customer completing
Checkout (the first charge, or only the mandate when the subscription starts later, a
trial), `renew(sub)` ends the current cycle and charges the next (paid, or failed with a
retry planned: `pending`), `retry(sub)` charges the open invoice again, `halt(sub)` is
Razorpay giving up, and `dashboard_cancel` / `dashboard_pause` are the merchant acting in
Razorpay's dashboard. Each records the `subscription.*` events Razorpay sends (in
`sub_events`, built when they happen), and posts them to `webhook_url` when one is set.

A cancellation at the cycle's end leaves the subscription `active` until `renew` reaches
the cycle's end (then `cancelled`, no charge) and shows on the entity as
`cancel_at_cycle_end: true` (what integrators read back; the published entity table does
not list it). Razorpay cannot undo a cancellation, and the fake refuses as Razorpay does.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from flask import Flask, jsonify, request

from tests.fakes.razorpay_signing import signed_webhook

DAY = 86400
PERIOD_SECONDS = {"daily": DAY, "weekly": 7 * DAY, "monthly": 30 * DAY, "yearly": 365 * DAY}
RETRY_AFTER = DAY  # Razorpay retries a failed charge on the following days


class SubscriptionsMixin:
    """Mixed into FakeRazorpay: its lock, orders, payments and error helper."""

    lock: threading.RLock
    orders: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    order_capture: dict[str, str]
    webhook_url: str | None
    webhook_secret: str
    key_secret: str
    add_payment: Callable[..., dict[str, Any]]

    def _subscriptions_init(self) -> None:
        self.plans: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        # (event id, body) of every subscription.* event, in the order Razorpay sent them.
        self.sub_events: list[tuple[str, dict[str, Any]]] = []
        self.plan_changes: list[dict[str, Any]] = []
        self._pending_plans: dict[str, str] = {}  # subscription -> plan at the cycle's end

    # ------------------------------------------------------------------ the clock
    def authenticate(self, sub_id: str, *, decline: bool = False) -> dict[str, Any]:
        """The customer completes Checkout for `sub_id`: returns the callback's payment.
        Immediate start: the authorisation is the first charge (authenticated, activated,
        charged). A later start (a trial): only the mandate (authenticated)."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            now = int(time.time())
            sub["customer_id"] = sub["customer_id"] or _rid("cust")
            sub["payment_method"] = "card"
            if decline:
                order = self._invoice_order(sub)
                return self.add_payment(order["id"], "failed")
            if sub["start_at"] and sub["start_at"] > now + 60:
                order = self._invoice_order(sub, amount=100)  # the mandate's token charge
                payment = self.add_payment(order["id"], "captured")
                sub["status"] = "authenticated"
                self._emit("subscription.authenticated", sub)
                return payment
            sub["start_at"] = sub["start_at"] or now
            sub["status"] = "authenticated"
            self._emit("subscription.authenticated", sub)
            _invoice, payment = self._charge(sub, now)
            sub["status"] = "active"
            self._emit("subscription.activated", sub)
            self._emit("subscription.charged", sub, payment)
            return payment

    def renew(self, sub_id: str, *, fail: bool = False) -> dict[str, Any]:
        """The current cycle ends: charge the next one (or, cancelling at the cycle's end,
        cancel; the first charge of a subscription that started late)."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            start = sub["current_end"] or sub["start_at"] or int(time.time())
            if sub.get("cancel_at_cycle_end"):
                sub.update(status="cancelled", ended_at=start)
                self._emit("subscription.cancelled", sub)
                return copy.deepcopy(sub)
            plan = self._pending_plans.pop(sub_id, None)
            if plan is not None:
                sub.update(plan_id=plan, has_scheduled_changes=False, change_scheduled_at=None)
            if fail:
                invoice = self._new_invoice(sub, start)
                order = self.orders[invoice["order_id"]]
                payment = self.add_payment(order["id"], "failed")
                invoice["payment_id"] = None
                invoice["status"] = "issued"
                sub.update(status="pending", charge_at=start + RETRY_AFTER, auth_attempts=1)
                self._advance(sub, start)
                self._emit("subscription.pending", sub, payment)
                return copy.deepcopy(sub)
            self._charge(sub, start)
            was = sub["status"]
            sub["status"] = "active"
            if was == "authenticated":
                self._emit("subscription.activated", sub)
            self._emit("subscription.charged", sub, self.payments[sub["_last_payment"]])
            if sub["remaining_count"] == 0:
                sub.update(status="completed", ended_at=sub["current_end"])
                self._emit("subscription.completed", sub)
            return copy.deepcopy(sub)

    def retry(self, sub_id: str, *, succeed: bool = True) -> dict[str, Any]:
        """Razorpay charges the open invoice of a pending subscription again."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            invoice = next(i for i in self.invoices.values() if _open(i, sub_id))
            if not succeed:
                self.add_payment(invoice["order_id"], "failed")
                sub["auth_attempts"] += 1
                sub["charge_at"] = int(time.time()) + RETRY_AFTER
                self._emit("subscription.pending", sub)
                return copy.deepcopy(sub)
            payment = self._pay(sub, invoice)
            sub.update(status="active", auth_attempts=0, charge_at=sub["current_end"])
            self._emit("subscription.charged", sub, payment)
            return copy.deepcopy(sub)

    def halt(self, sub_id: str) -> dict[str, Any]:
        """Retries used up: Razorpay halts the subscription (no more charges)."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            sub.update(status="halted", charge_at=None)
            self._emit("subscription.halted", sub)
            return copy.deepcopy(sub)

    def dashboard_cancel(self, sub_id: str, *, at_cycle_end: bool = False) -> dict[str, Any]:
        """The merchant cancels in Razorpay's dashboard (Kassa hears only the webhook)."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            self._cancel(sub, at_cycle_end)
            return copy.deepcopy(sub)

    def dashboard_pause(self, sub_id: str) -> dict[str, Any]:
        with self.lock:
            sub = self.subscriptions[sub_id]
            self._pause(sub)
            return copy.deepcopy(sub)

    def subscription_callback_fields(
        self, sub_id: str, payment_id: str, secret: str | None = None
    ) -> dict[str, str]:
        """What Checkout posts to callback_url once a subscription is authorised."""
        from tests.fakes.razorpay_signing import hmac_hex

        key = secret or self.key_secret
        return {
            "razorpay_payment_id": payment_id,
            "razorpay_subscription_id": sub_id,
            "razorpay_signature": hmac_hex(key, f"{payment_id}|{sub_id}".encode()),
        }

    # ------------------------------------------------------------------ internals
    def _plan_of(self, sub: dict[str, Any]) -> dict[str, Any]:
        return self.plans[sub["plan_id"]]

    def _invoice_order(self, sub: dict[str, Any], amount: int | None = None) -> dict[str, Any]:
        item = self._plan_of(sub)["item"]
        order = {
            "id": _rid("order"),
            "entity": "order",
            "amount": item["amount"] * sub["quantity"] if amount is None else amount,
            "amount_paid": 0,
            "amount_due": item["amount"] * sub["quantity"] if amount is None else amount,
            "currency": item["currency"],
            "receipt": None,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": [],
            "created_at": int(time.time()),
        }
        self.orders[order["id"]] = order
        self.order_capture[order["id"]] = "automatic"
        return order

    def _new_invoice(self, sub: dict[str, Any], start: int) -> dict[str, Any]:
        plan = self._plan_of(sub)
        item = plan["item"]
        amount = item["amount"] * sub["quantity"]
        order = self._invoice_order(sub)
        now = int(time.time())
        invoice = {
            "id": _rid("inv"),
            "entity": "invoice",
            "receipt": None,
            "invoice_number": None,
            "customer_id": sub["customer_id"],
            "customer_details": {"id": sub["customer_id"], "email": None, "contact": None},
            "order_id": order["id"],
            "subscription_id": sub["id"],
            "line_items": [
                {
                    "id": _rid("li"),
                    "item_id": item["id"],
                    "name": item["name"],
                    "amount": item["amount"],
                    "unit_amount": item["amount"],
                    "gross_amount": amount,
                    "net_amount": amount,
                    "currency": item["currency"],
                    "type": "plan",
                    "quantity": sub["quantity"],
                }
            ],
            "payment_id": None,
            "status": "issued",
            "expire_by": None,
            "issued_at": now,
            "paid_at": None,
            "cancelled_at": None,
            "expired_at": None,
            "date": now,
            "partial_payment": False,
            "gross_amount": amount,
            "tax_amount": 0,
            "taxable_amount": 0,
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": item["currency"],
            "description": None,
            "notes": [],
            "short_url": f"https://rzp.io/i/{secrets.token_hex(4)}",
            "billing_start": start,
            "billing_end": start + _period(plan),
            "type": "invoice",
            "created_at": now,
        }
        self.invoices[invoice["id"]] = invoice
        return invoice

    def _pay(self, sub: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
        payment = self.add_payment(invoice["order_id"], "captured")
        stored = self.payments[payment["id"]]
        stored["invoice_id"] = invoice["id"]
        invoice.update(
            status="paid",
            payment_id=payment["id"],
            paid_at=int(time.time()),
            amount_paid=invoice["amount"],
            amount_due=0,
        )
        sub["paid_count"] += 1
        sub["remaining_count"] = max(sub["total_count"] - sub["paid_count"], 0)
        sub["_last_payment"] = payment["id"]
        return copy.deepcopy(stored)

    def _advance(self, sub: dict[str, Any], start: int) -> None:
        sub["current_start"] = start
        sub["current_end"] = start + _period(self._plan_of(sub))

    def _charge(self, sub: dict[str, Any], start: int) -> tuple[dict[str, Any], dict[str, Any]]:
        invoice = self._new_invoice(sub, start)
        payment = self._pay(sub, invoice)
        self._advance(sub, start)
        sub["charge_at"] = sub["current_end"]
        return invoice, payment

    def _cancel(self, sub: dict[str, Any], at_cycle_end: bool) -> None:
        if sub["status"] in ("cancelled", "completed", "expired"):
            raise _Refused(f"Subscription is not cancellable in {sub['status']} status.")
        if at_cycle_end and sub["status"] in ("active", "pending", "halted", "paused"):
            sub["cancel_at_cycle_end"] = True
            return  # Razorpay's dashboard sends nothing until the cycle ends
        sub.update(status="cancelled", ended_at=int(time.time()), charge_at=None)
        self._emit("subscription.cancelled", sub)

    def _pause(self, sub: dict[str, Any]) -> None:
        if sub["status"] == "authenticated":
            sub.update(status="cancelled", ended_at=int(time.time()))
            self._emit("subscription.cancelled", sub)
            return
        if sub["status"] != "active":
            raise _Refused("Subscription can only be paused in active state.")
        sub.update(status="paused", pause_initiated_by="self")
        self._emit("subscription.paused", sub)

    def _public(self, sub: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in sub.items() if not k.startswith("_")}

    def _emit(self, kind: str, sub: dict[str, Any], payment: dict[str, Any] | None = None) -> None:
        """Record (and, with webhook_url, send) a subscription event as Razorpay builds it."""
        payload: dict[str, Any] = {"subscription": {"entity": self._public(sub)}}
        if payment is not None:
            payload["payment"] = {"entity": copy.deepcopy(payment)}
        body = {
            "entity": "event",
            "account_id": "acc_FakeAccount01",
            "event": kind,
            "contains": list(payload),
            "payload": payload,
            "created_at": int(time.time()),
        }
        event_id = "evt_" + secrets.token_hex(8)
        self.sub_events.append((event_id, body))
        if self.webhook_url:
            raw, headers = signed_webhook(self.webhook_secret, body, event_id)
            url = self.webhook_url
            threading.Thread(
                target=lambda: requests.post(url, data=raw, headers=headers, timeout=10),
                daemon=True,
            ).start()

    # ------------------------------------------------------------------ the API
    def subscription_routes(self, app: Flask, error: Any) -> None:
        fake = self

        def refused(exc: _Refused) -> Any:
            return error(400, str(exc))

        app.register_error_handler(_Refused, refused)

        @app.post("/v1/plans")
        def create_plan() -> Any:
            body = request.get_json(silent=True) or {}
            period, interval = body.get("period"), body.get("interval")
            item = body.get("item") or {}
            if period not in PERIOD_SECONDS:
                return error(400, "The period must be daily, weekly, monthly or yearly.")
            if not isinstance(interval, int) or interval < 1:
                return error(400, "The interval must be an integer.")
            if period == "daily" and interval < 7:
                return error(400, "The interval for daily plans should be at least 7.")
            amount, currency = item.get("amount"), item.get("currency")
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 100:
                return error(400, "The amount must be atleast INR 1.00")
            if not item.get("name") or not isinstance(currency, str) or len(currency) != 3:
                return error(400, "The item name and currency are required.")
            now = int(time.time())
            with fake.lock:
                plan = {
                    "id": _rid("plan"),
                    "entity": "plan",
                    "interval": interval,
                    "period": period,
                    "item": {
                        "id": _rid("item"),
                        "active": True,
                        "name": item["name"],
                        "description": item.get("description"),
                        "amount": amount,
                        "unit_amount": amount,
                        "currency": currency,
                        "type": "plan",
                        "unit": None,
                        "tax_inclusive": False,
                        "created_at": now,
                        "updated_at": now,
                    },
                    "notes": body.get("notes") or [],
                    "created_at": now,
                }
                fake.plans[plan["id"]] = plan
                return jsonify(plan)

        @app.get("/v1/plans")
        def list_plans() -> Any:
            count = min(int(request.args.get("count", 10)), 100)
            skip = int(request.args.get("skip", 0))
            with fake.lock:
                items = sorted(fake.plans.values(), key=lambda p: p["created_at"], reverse=True)
                items = items[skip : skip + count]
                return jsonify({"entity": "collection", "count": len(items), "items": items})

        @app.get("/v1/plans/<plan_id>")
        def fetch_plan(plan_id: str) -> Any:
            with fake.lock:
                if plan_id not in fake.plans:
                    return error(400, "The id provided does not exist")
                return jsonify(fake.plans[plan_id])

        @app.post("/v1/subscriptions")
        def create_subscription() -> Any:
            body = request.get_json(silent=True) or {}
            total = body.get("total_count")
            with fake.lock:
                if body.get("plan_id") not in fake.plans:
                    return error(400, "The id provided does not exist")
                if not isinstance(total, int) or total < 1:
                    return error(400, "The total count field is required.")
                now = int(time.time())
                start_at = body.get("start_at")
                if start_at is not None and (not isinstance(start_at, int) or start_at < now):
                    return error(400, "start_at cannot be lesser than the current time.")
                sub = {
                    "id": _rid("sub"),
                    "entity": "subscription",
                    "plan_id": body["plan_id"],
                    "customer_id": None,
                    "status": "created",
                    "current_start": None,
                    "current_end": None,
                    "ended_at": None,
                    "quantity": int(body.get("quantity") or 1),
                    "notes": body.get("notes") or [],
                    "charge_at": start_at,
                    "start_at": start_at,
                    "end_at": None,
                    "auth_attempts": 0,
                    "total_count": total,
                    "paid_count": 0,
                    "customer_notify": bool(body.get("customer_notify", True)),
                    "created_at": now,
                    "expire_by": body.get("expire_by"),
                    "short_url": f"https://rzp.io/i/{secrets.token_hex(5)}",
                    "has_scheduled_changes": False,
                    "change_scheduled_at": None,
                    "source": "api",
                    "payment_method": None,
                    "offer_id": None,
                    "remaining_count": total,
                }
                fake.subscriptions[sub["id"]] = sub
                return jsonify(fake._public(sub))

        @app.get("/v1/subscriptions")
        def list_subscriptions() -> Any:
            plan_id = request.args.get("plan_id")
            count = min(int(request.args.get("count", 10)), 100)
            skip = int(request.args.get("skip", 0))
            with fake.lock:
                items = [
                    fake._public(s)
                    for s in fake.subscriptions.values()
                    if plan_id is None or s["plan_id"] == plan_id
                ]
                items = sorted(items, key=lambda s: s["created_at"], reverse=True)
                items = items[skip : skip + count]
                return jsonify({"entity": "collection", "count": len(items), "items": items})

        def _sub(sub_id: str) -> dict[str, Any]:
            sub = fake.subscriptions.get(sub_id)
            if sub is None:
                raise _Refused("The id provided does not exist")
            return sub

        @app.get("/v1/subscriptions/<sub_id>")
        def fetch_subscription(sub_id: str) -> Any:
            with fake.lock:
                return jsonify(fake._public(_sub(sub_id)))

        @app.post("/v1/subscriptions/<sub_id>/cancel")
        def cancel_subscription(sub_id: str) -> Any:
            body = request.get_json(silent=True) or {}
            with fake.lock:
                sub = _sub(sub_id)
                fake._cancel(sub, bool(body.get("cancel_at_cycle_end")))
                return jsonify(fake._public(sub))

        @app.post("/v1/subscriptions/<sub_id>/pause")
        def pause_subscription(sub_id: str) -> Any:
            body = request.get_json(silent=True) or {}
            with fake.lock:
                sub = _sub(sub_id)
                if body.get("pause_at") != "now":
                    return error(400, "pause_at must be now")
                fake._pause(sub)
                return jsonify(fake._public(sub))

        @app.post("/v1/subscriptions/<sub_id>/resume")
        def resume_subscription(sub_id: str) -> Any:
            body = request.get_json(silent=True) or {}
            with fake.lock:
                sub = _sub(sub_id)
                if body.get("resume_at") != "now":
                    return error(400, "resume_at must be now")
                if sub["status"] != "paused":
                    return error(400, "Subscription is not in paused state.")
                sub.update(status="active", pause_initiated_by=None)
                fake._emit("subscription.resumed", sub)
                return jsonify(fake._public(sub))

        @app.patch("/v1/subscriptions/<sub_id>")
        def update_subscription(sub_id: str) -> Any:
            body = request.get_json(silent=True) or {}
            with fake.lock:
                sub = _sub(sub_id)
                if sub["status"] not in ("active", "authenticated"):
                    return error(400, f"Subscription cannot be updated in {sub['status']} status.")
                if sub.get("payment_method") == "upi":
                    return error(400, "subscriptions cannot be updated when payment mode is UPI")
                plan_id = body.get("plan_id")
                if plan_id is not None and plan_id not in fake.plans:
                    return error(400, "The id provided does not exist")
                when = body.get("schedule_change_at", "now")
                if when not in ("now", "cycle_end"):
                    return error(400, "schedule_change_at must be now or cycle_end")
                fake.plan_changes.append({"subscription": sub_id, "plan_id": plan_id, "at": when})
                if plan_id is not None:
                    if when == "now":
                        sub["plan_id"] = plan_id
                    else:
                        fake._pending_plans[sub_id] = plan_id
                        sub.update(
                            has_scheduled_changes=True, change_scheduled_at=sub["current_end"]
                        )
                fake._emit("subscription.updated", sub)
                return jsonify(fake._public(sub))

        @app.post("/v1/subscriptions/<sub_id>/cancel_scheduled_changes")
        def cancel_scheduled_changes(sub_id: str) -> Any:
            with fake.lock:
                sub = _sub(sub_id)
                if not sub["has_scheduled_changes"]:
                    return error(400, "Subscription has no scheduled changes.")
                fake._pending_plans.pop(sub_id, None)
                sub.update(has_scheduled_changes=False, change_scheduled_at=None)
                return jsonify(fake._public(sub))

        @app.get("/v1/invoices")
        def list_invoices() -> Any:
            sub_id = request.args.get("subscription_id")
            count = min(int(request.args.get("count", 10)), 100)
            skip = int(request.args.get("skip", 0))
            with fake.lock:
                items = [
                    copy.deepcopy(i)
                    for i in fake.invoices.values()
                    if sub_id is None or i["subscription_id"] == sub_id
                ]
                items = sorted(items, key=lambda i: i["created_at"], reverse=True)
                items = items[skip : skip + count]
                return jsonify({"entity": "collection", "count": len(items), "items": items})

        @app.get("/v1/invoices/<invoice_id>")
        def fetch_invoice(invoice_id: str) -> Any:
            with fake.lock:
                if invoice_id not in fake.invoices:
                    return error(400, "The id provided does not exist")
                return jsonify(fake.invoices[invoice_id])


class _Refused(Exception):
    """A request Razorpay answers with a BAD_REQUEST_ERROR."""


def _rid(prefix: str) -> str:
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "_" + "".join(secrets.choice(alnum) for _ in range(14))


def _period(plan: dict[str, Any]) -> int:
    return int(PERIOD_SECONDS[plan["period"]] * plan["interval"])


def _open(invoice: dict[str, Any], sub_id: str) -> bool:
    return invoice["subscription_id"] == sub_id and invoice["status"] == "issued"
