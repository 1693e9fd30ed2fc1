"""Read-only queries for the dashboard (nothing here changes state).

Every list is keyset-paginated on (created_at, id) so page 1000 costs what page 1 does,
and every filter maps onto an existing index: payments(created_at, id),
(status, created_at), (gateway, created_at), unique public ids, gateway ids, emails.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import Select, and_, case, func, or_, select, tuple_
from sqlalchemy.orm import selectinload

from app.crypto import email_hash
from app.extensions import db
from app.gateways import registry
from app.models import (
    AuditEntry,
    Order,
    Payment,
    Product,
    Refund,
    RefundStatus,
    WebhookEvent,
    WebhookStatus,
)
from app.models.enums import CAPTURED, FINAL_PAYMENT_STATUSES
from app.payments import store
from app.presentation import OPEN_STATES, status_condition

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
SORTS = {"newest": "Newest first", "oldest": "Oldest first"}


# --- payments list ------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentFilters:
    """What the merchant asked for; built from the query string by the form."""

    status: str | None = None
    gateway: str | None = None
    currency: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    sort: str = "newest"

    def query_args(self) -> dict[str, str]:
        """The filters as URL parameters (empty ones left out), for links."""
        args = {
            "status": self.status or "",
            "gateway": self.gateway or "",
            "currency": self.currency or "",
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "q": self.q,
            "sort": self.sort if self.sort != "newest" else "",
        }
        return {k: v for k, v in args.items() if v}


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str | None) -> tuple[datetime, int] | None:
    """A cursor from a URL; anything malformed is treated as "first page"."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, _, row_id = raw.partition("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            return None
        return parsed.astimezone(UTC), int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _search_condition(q: str) -> Any:
    """Exact matches only, each answerable from an index (no LIKE '%...%' scans)."""
    q = q.strip()
    conditions: list[Any] = [Payment.public_id == q]
    if q.startswith("ord_"):
        # Looked up first: an IN (subquery) inside an OR makes PostgreSQL scan every payment.
        order_id = db.session.execute(
            select(Order.id).where(Order.public_id == q)
        ).scalar_one_or_none()
        if order_id is not None:
            conditions.append(Payment.order_id == order_id)
    if "@" in q:
        # Through the blind index: the email is encrypted (app/crypto.py).
        conditions.append(Payment.customer_email_hash == email_hash(q))
    else:
        # The unique indexes lead with gateway, so name every gateway to use them.
        names = gateway_choices()
        conditions.append(and_(Payment.gateway.in_(names), Payment.gateway_reference == q))
        conditions.append(and_(Payment.gateway.in_(names), Payment.gateway_payment_id == q))
    return or_(*conditions)


def filtered_payments(filters: PaymentFilters) -> Select[Any]:
    """The WHERE part shared by the list, the count-free pager and the CSV export."""
    stmt = select(Payment)
    if filters.status:
        stmt = stmt.where(status_condition(filters.status))
    if filters.gateway:
        stmt = stmt.where(Payment.gateway == filters.gateway)
    if filters.currency:
        stmt = stmt.where(Payment.currency == filters.currency)
    if filters.date_from:
        stmt = stmt.where(Payment.created_at >= _day_start(filters.date_from))
    if filters.date_to:
        stmt = stmt.where(Payment.created_at < _day_start(filters.date_to + timedelta(days=1)))
    if filters.q.strip():
        stmt = stmt.where(_search_condition(filters.q))
    return stmt


def _ordered(stmt: Select[Any], newest_first: bool) -> Select[Any]:
    if newest_first:
        return stmt.order_by(Payment.created_at.desc(), Payment.id.desc())
    return stmt.order_by(Payment.created_at.asc(), Payment.id.asc())


@dataclass
class PaymentPage:
    payments: list[Payment]
    next_cursor: str | None = None  # older rows (in the chosen sort order: further on)
    prev_cursor: str | None = None  # the rows before this page
    filters: PaymentFilters = field(default_factory=PaymentFilters)


def payment_page(
    filters: PaymentFilters,
    after: str | None = None,
    before: str | None = None,
    limit: int = PAGE_SIZE,
) -> PaymentPage:
    """One page of payments, seeking from a cursor instead of counting with OFFSET."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    newest_first = filters.sort != "oldest"
    after_key, before_key = decode_cursor(after), decode_cursor(before)
    key = tuple_(Payment.created_at, Payment.id)
    stmt = filtered_payments(filters).options(selectinload(Payment.order))
    backwards = before_key is not None and after_key is None
    if after_key is not None:
        stmt = stmt.where(key < tuple_(*after_key) if newest_first else key > tuple_(*after_key))
    elif before_key is not None:
        stmt = stmt.where(key > tuple_(*before_key) if newest_first else key < tuple_(*before_key))
    # Walking backwards reads the index the other way, then flips the page.
    stmt = _ordered(stmt, newest_first != backwards).limit(limit + 1)
    rows = list(db.session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    page = PaymentPage(rows, filters=filters)
    if rows:
        first, last = rows[0], rows[-1]
        if backwards:
            page.next_cursor = encode_cursor(last.created_at, last.id)
            page.prev_cursor = encode_cursor(first.created_at, first.id) if more else None
        else:
            page.next_cursor = encode_cursor(last.created_at, last.id) if more else None
            page.prev_cursor = (
                encode_cursor(first.created_at, first.id) if after_key is not None else None
            )
    return page


def export_rows(filters: PaymentFilters, batch: int = 5000) -> Iterator[Sequence[Any]]:
    """Plain column tuples for the CSV export, streamed from a server-side cursor."""
    base = filtered_payments(filters).subquery()
    stmt = select(
        base.c.public_id,
        base.c.created_at,
        Order.public_id,
        base.c.status,
        base.c.gateway,
        base.c.amount,
        base.c.amount_refunded,
        base.c.currency,
        base.c.customer_email,
        base.c.gateway_reference,
        base.c.gateway_payment_id,
        base.c.failure_code,
    ).join(Order, Order.id == base.c.order_id)
    if filters.sort == "oldest":
        stmt = stmt.order_by(base.c.created_at.asc(), base.c.id.asc())
    else:
        stmt = stmt.order_by(base.c.created_at.desc(), base.c.id.desc())
    # Core rows through a server-side cursor (stream_results): constant memory, and
    # no ORM bookkeeping per row.
    result = db.session.connection().execute(
        stmt.execution_options(stream_results=True, yield_per=batch)
    )
    for partition in result.partitions():
        yield from partition


def currency_choices(requested: str | None = None) -> list[str]:
    """The catalog's currencies (a small table, unlike a DISTINCT over every payment),
    plus any valid ISO code asked for in the URL."""
    from app.models import Product
    from app.money import MoneyError, normalize_currency

    found = set(db.session.execute(select(Product.currency).distinct()).scalars())
    if requested:
        try:
            found.add(normalize_currency(requested))
        except MoneyError:
            pass
    return sorted(found)


def gateway_choices() -> list[str]:
    """Every gateway Kassa knows, configured now or not (old payments stay filterable)."""
    return sorted(set(registry.ORDER) | set(registry.gateways()))


def is_final(payment: Payment) -> bool:
    return payment.status in FINAL_PAYMENT_STATUSES


# --- one payment --------------------------------------------------------------------


def payment_detail(public_id: str) -> Payment | None:
    return db.session.execute(
        select(Payment)
        .where(Payment.public_id == public_id)
        .options(
            selectinload(Payment.order).selectinload(Order.items),
            selectinload(Payment.refunds),
            selectinload(Payment.disputes),
        )
    ).scalar_one_or_none()


@dataclass(frozen=True)
class TimelineItem:
    when: datetime
    kind: str  # "audit" or "webhook"
    title: str  # the plain sentence
    actor: str | None = None  # who, as a merchant knows them (an email, a key's name)
    from_state: str | None = None
    to_state: str | None = None
    details: dict[str, Any] | None = None
    payload: str | None = None  # raw webhook body (already redacted when stored)
    outcome: str | None = None
    ref: str = ""
    raw: str = ""  # the raw record: action or event type, states, actor id
    routine: bool = False  # changed nothing: folded away


def timeline(payment: Payment, limit: int = 500) -> list[TimelineItem]:
    """Audit entries and webhook events of a payment, oldest first, in plain words."""
    from app.dashboard import timeline as words

    audits = list(
        db.session.execute(
            select(AuditEntry)
            .where(AuditEntry.payment_id == payment.id)
            .order_by(AuditEntry.created_at, AuditEntry.id)
            .limit(limit)
        ).scalars()
    )
    people = words.People((a.actor_type, a.actor_id) for a in audits)
    items = []
    for a in audits:
        states = (
            f" {a.from_state or '∅'} → {a.to_state or '∅'}" if a.from_state or a.to_state else ""
        )
        who = f"{a.actor_type}:{a.actor_id}" if a.actor_id else a.actor_type
        items.append(
            TimelineItem(
                when=a.created_at,
                kind="audit",
                title=words.audit_sentence(
                    a.action, a.from_state, a.to_state, a.details, payment.currency
                ),
                actor=people.name(a.actor_type, a.actor_id),
                from_state=a.from_state,
                to_state=a.to_state,
                details=a.details,
                ref=f"audit-{a.id}",
                raw=f"{a.action}{states} by {who}",
                routine=a.action in words.ROUTINE_ACTIONS,
            )
        )
    hooks = db.session.execute(
        select(WebhookEvent)
        .where(WebhookEvent.payment_id == payment.id)
        .order_by(WebhookEvent.received_at, WebhookEvent.id)
        .limit(limit)
    ).scalars()
    for w in hooks:
        outcome = w.outcome or w.status
        items.append(
            TimelineItem(
                when=w.received_at,
                kind="webhook",
                title=words.webhook_sentence(w.event_type, w.gateway, outcome),
                actor=f"{words.gateway_name(w.gateway)} (webhook)",
                payload=w.payload,
                outcome=outcome,
                ref=f"event-{w.id}",
                raw=f"{w.event_type} {w.gateway}:{w.event_id} ({w.status}; {outcome})",
                routine=words.is_routine_webhook(w.outcome),
            )
        )
    items.sort(key=lambda item: (item.when, item.kind))
    return items


def refund_by_key(idempotency_key: str) -> Refund | None:
    return db.session.execute(
        select(Refund).where(Refund.idempotency_key == idempotency_key[:80])
    ).scalar_one_or_none()


def has_pending_refunds(payment: Payment) -> bool:
    return any(r.status == RefundStatus.PENDING for r in payment.refunds)


def gateway_dashboard_url(payment: Payment, live: bool | None = None) -> str | None:
    """A link to the payment in the gateway's own dashboard (none for the sandbox)."""
    pid = payment.gateway_payment_id
    if payment.gateway == "stripe" and pid:
        if live is None:
            from flask import current_app

            live = str(current_app.config.get("STRIPE_SECRET_KEY") or "").startswith(
                ("sk_live_", "rk_live_")
            )
        return f"https://dashboard.stripe.com/{'' if live else 'test/'}payments/{pid}"
    if payment.gateway == "razorpay" and pid:
        return f"https://dashboard.razorpay.com/app/payments/{pid}"
    if payment.gateway == "paypal" and pid:
        if live is None:
            from flask import current_app

            host = urlsplit(str(current_app.config.get("PAYPAL_API_BASE") or "")).hostname
            live = host in ("api-m.paypal.com", "api.paypal.com")
        # The capture (or authorization) id is PayPal's transaction id in its activity view.
        site = "https://www.paypal.com" if live else "https://www.sandbox.paypal.com"
        return f"{site}/activity/payment/{quote(pid, safe='')}"
    return None


# --- webhook inbox ------------------------------------------------------------------


def webhook_page(
    status: str | None, gateway: str | None, before_id: int | None, limit: int = PAGE_SIZE
) -> tuple[list[WebhookEvent], int | None]:
    """Newest events first, keyset on id."""
    stmt = select(WebhookEvent)
    if status:
        stmt = stmt.where(WebhookEvent.status == status)
    if gateway:
        stmt = stmt.where(WebhookEvent.gateway == gateway)
    if before_id:
        stmt = stmt.where(WebhookEvent.id < before_id)
    rows = list(
        db.session.execute(stmt.order_by(WebhookEvent.id.desc()).limit(limit + 1)).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def webhook_event(row_id: int) -> WebhookEvent | None:
    return db.session.get(WebhookEvent, row_id)


def is_reprocessable(event: WebhookEvent) -> bool:
    return event.status != WebhookStatus.PROCESSED


# --- overview -----------------------------------------------------------------------


@dataclass
class DayPoint:
    day: date
    count: int = 0
    succeeded: int = 0
    volume: int = 0  # captured amount, in the chart's currency
    open: int = 0  # checkouts still open


@dataclass
class Overview:
    days: int
    start: date
    end: date
    chart_currency: str | None
    currencies: list[str]
    series: list[DayPoint]
    total_count: int
    total_succeeded: int
    total_open: int  # checkouts still open (the customer may yet pay): not in the rate
    by_gateway: list[dict[str, Any]]
    by_currency: list[dict[str, Any]]

    @property
    def success_rate(self) -> float | None:
        settled = self.total_count - self.total_open
        return self.total_succeeded / settled if settled else None


def _rate(succeeded: int, settled: int) -> float | None:
    """Success among attempts that are settled: checkouts still open are left out."""
    return succeeded / settled if settled > 0 else None


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def overview(days: int, currency: str | None = None, today: date | None = None) -> Overview:
    """Per-day counts and volume for the last `days` days, aggregated in SQL."""
    end = today or datetime.now(UTC).date()
    start = end - timedelta(days=days - 1)
    since = _day_start(start)
    day = store.utc_day(Payment.created_at)
    captured = Payment.status.in_([s.value for s in CAPTURED])
    still_open = Payment.status.in_(OPEN_STATES)
    # One pass over the date range; the few hundred groups are folded in Python.
    rows = db.session.execute(
        select(
            day.label("day"),
            Payment.gateway,
            Payment.currency,
            func.count().label("n"),
            func.sum(case((captured, 1), else_=0)).label("ok"),
            func.sum(case((captured, Payment.amount), else_=0)).label("volume"),
            func.sum(case((still_open, 1), else_=0)).label("open"),
        )
        .where(Payment.created_at >= since)
        .group_by(day, Payment.gateway, Payment.currency)
    ).all()
    refunds = db.session.execute(
        select(Refund.currency, func.count(), func.sum(Refund.amount))
        .where(Refund.created_at >= since, Refund.status == RefundStatus.SUCCEEDED)
        .group_by(Refund.currency)
    ).all()
    refunded = {cur: (int(n), int(total or 0)) for cur, n, total in refunds}

    volume_by_currency: dict[str, int] = defaultdict(int)
    gateways: dict[str, dict[str, int]] = defaultdict(
        lambda: {"count": 0, "succeeded": 0, "open": 0}
    )
    currencies: dict[str, dict[str, int]] = defaultdict(
        lambda: {"count": 0, "succeeded": 0, "volume": 0, "open": 0}
    )
    for r in rows:
        volume_by_currency[r.currency] += int(r.volume or 0)
        g = gateways[r.gateway]
        g["count"] += int(r.n)
        g["succeeded"] += int(r.ok or 0)
        g["open"] += int(r.open or 0)
        c = currencies[r.currency]
        c["count"] += int(r.n)
        c["succeeded"] += int(r.ok or 0)
        c["open"] += int(r.open or 0)
        c["volume"] += int(r.volume or 0)
    names = sorted(currencies)
    chart_currency = (
        currency
        if currency in currencies
        else (max(names, key=lambda cur: currencies[cur]["count"]) if names else None)
    )

    points = {start + timedelta(days=i): DayPoint(start + timedelta(days=i)) for i in range(days)}
    for r in rows:
        point = points.get(_as_date(r.day))
        if point is None:
            continue
        point.count += int(r.n)
        point.succeeded += int(r.ok or 0)
        point.open += int(r.open or 0)
        if r.currency == chart_currency:
            point.volume += int(r.volume or 0)

    by_currency = []
    for cur in names:
        c = currencies[cur]
        n_ref, amount_ref = refunded.get(cur, (0, 0))
        by_currency.append(
            {
                "currency": cur,
                **c,
                "refund_count": n_ref,
                "refunded": amount_ref,
                "net": c["volume"] - amount_ref,
                "rate": _rate(c["succeeded"], c["count"] - c["open"]),
            }
        )
    for cur, (n_ref, amount_ref) in refunded.items():
        if cur not in currencies:
            by_currency.append(
                {
                    "currency": cur,
                    "count": 0,
                    "succeeded": 0,
                    "volume": 0,
                    "open": 0,
                    "refund_count": n_ref,
                    "refunded": amount_ref,
                    "net": -amount_ref,
                    "rate": None,
                }
            )
    by_gateway = [
        {"gateway": name, **g, "rate": _rate(g["succeeded"], g["count"] - g["open"])}
        for name, g in sorted(gateways.items())
    ]
    series = [points[d] for d in sorted(points)]
    return Overview(
        days=days,
        start=start,
        end=end,
        chart_currency=chart_currency,
        currencies=names,
        series=series,
        total_count=sum(p.count for p in series),
        total_succeeded=sum(p.succeeded for p in series),
        total_open=sum(p.open for p in series),
        by_gateway=by_gateway,
        by_currency=by_currency,
    )


def listed_products() -> list[Product]:
    """The storefront's products (what a payment link may sell)."""
    return list(
        db.session.execute(
            select(Product)
            .where(Product.active.is_(True), Product.listed.is_(True))
            .order_by(Product.id)
        ).scalars()
    )
