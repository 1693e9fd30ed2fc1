"""The customer's cart: several catalog items with quantities, kept in the session.

The cart holds only SKUs and quantities (the signed session cookie); names, prices and
stock are read from the catalog each time it is shown, so a price change or a sale that
empties the stock shows up before the customer pays. One order has one currency, so a cart
does too: adding an item priced in another currency says so and changes nothing. Nothing
here reserves stock or writes to the database: checking out is the core's
`create_checkout`, as for a single product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from flask import session
from flask_babel import gettext as _
from sqlalchemy import select

from app.extensions import db
from app.models import Product
from app.money import format_minor
from app.payments.orders import ItemRequest

SESSION_KEY = "kassa_cart"
MAX_QUANTITY = 99  # the core's limit per line
MAX_LINES = 20  # the core's limit per order


def max_quantity(product: Product) -> int:
    """The most one may order of a product: its stock, up to the per-line limit."""
    return MAX_QUANTITY if product.stock is None else max(0, min(MAX_QUANTITY, product.stock))


def stock_problem(product: Product, quantity: int) -> str | None:
    """What is wrong with ordering `quantity` of `product`, in the words of its page."""
    if product.stock is not None and product.stock <= 0:
        return str(_("%(name)s is sold out.", name=product.name))
    limit = max_quantity(product)
    if quantity > limit:
        if product.stock is not None and product.stock < MAX_QUANTITY:
            return str(
                _(
                    "Only %(stock)s left of %(name)s: choose %(limit)s or fewer.",
                    stock=product.stock,
                    name=product.name,
                    limit=limit,
                )
            )
        return str(_("Choose %(limit)s or fewer of %(name)s.", limit=limit, name=product.name))
    return None


@dataclass
class Line:
    product: Product
    quantity: int

    @property
    def amount(self) -> int:
        return self.product.unit_amount * self.quantity


@dataclass
class CartView:
    lines: list[Line] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # what changed since it was filled

    @property
    def currency(self) -> str | None:
        return self.lines[0].product.currency if self.lines else None

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def count(self) -> int:
        return sum(line.quantity for line in self.lines)

    def total_display(self) -> str:
        return format_minor(self.total, self.currency) if self.currency else ""

    def items(self) -> list[ItemRequest]:
        return [ItemRequest(line.product.sku, line.quantity) for line in self.lines]


def _raw() -> dict[str, int]:
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): int(v) for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)
    }


def _save(items: dict[str, int]) -> None:
    session[SESSION_KEY] = {k: v for k, v in items.items() if v > 0}
    session.modified = True


def count() -> int:
    """Units in the cart (for the header), without reading the catalog."""
    return sum(_raw().values())


def _products(skus: Sequence[str]) -> dict[str, Product]:
    if not skus:
        return {}
    rows = db.session.execute(
        select(Product).where(
            Product.sku.in_(list(skus)), Product.active.is_(True), Product.listed.is_(True)
        )
    ).scalars()
    return {p.sku: p for p in rows}


def view() -> CartView:
    """The cart as it stands in the catalog now: gone products dropped, quantities cut
    to the stock left (each change said in a notice, and saved)."""
    raw = _raw()
    products = _products(list(raw))
    cart = CartView()
    kept: dict[str, int] = {}
    for sku, quantity in raw.items():
        product = products.get(sku)
        if product is None:
            cart.notices.append("An item is no longer sold and was taken out of your cart.")
            continue
        limit = max_quantity(product)
        if limit <= 0:
            cart.notices.append(f"{product.name} sold out and was taken out of your cart.")
            continue
        if quantity > limit:
            cart.notices.append(f"Only {limit} of {product.name} left: your cart now has {limit}.")
            quantity = limit
        if cart.currency and product.currency != cart.currency:
            continue  # cannot happen through add(); a tampered cookie is just trimmed
        kept[sku] = quantity
        cart.lines.append(Line(product, quantity))
    if kept != raw:
        _save(kept)
    return cart


class CartError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def add(product: Product, quantity: int) -> None:
    """Put `quantity` more of a product in the cart (or raise CartError, changing nothing)."""
    if quantity < 1:
        raise CartError("Choose a quantity of at least 1.")
    current = view()  # (drops what is no longer sold first)
    items = _raw()
    if current.currency and current.currency != product.currency:
        raise CartError(
            f"Your cart is in {current.currency} and {product.name} is priced in "
            f"{product.currency}. One order has one currency: check out or empty your cart "
            "first."
        )
    if product.sku not in items and len(items) >= MAX_LINES:
        raise CartError(f"A cart holds at most {MAX_LINES} different items.")
    wanted = items.get(product.sku, 0) + quantity
    problem = stock_problem(product, wanted)
    if problem:
        raise CartError(problem)
    items[product.sku] = wanted
    _save(items)


def update(quantities: dict[str, int]) -> list[str]:
    """Set quantities (0 removes); returns messages for quantities that were cut."""
    items = _raw()
    products = _products([s for s in quantities if s in items])
    messages = []
    for sku, quantity in quantities.items():
        if sku not in items:
            continue
        product = products.get(sku)
        if product is None or quantity <= 0:
            items.pop(sku, None)
            continue
        problem = stock_problem(product, quantity)
        if problem:
            messages.append(problem)
            quantity = max_quantity(product)
        items[sku] = quantity
    _save(items)
    return messages


def clear() -> None:
    session.pop(SESSION_KEY, None)
