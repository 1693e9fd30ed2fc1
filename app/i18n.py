"""Languages: customer pages, emails and the dashboard in the reader's language (Flask-Babel).

The language is the browser's best match among LANGUAGES (Accept-Language), else
DEFAULT_LOCALE; amounts and dates are formatted for it by Babel. The merchant's dashboard
follows their browser the same way. A checkout keeps the customer's language on the order
(orders.locale), so the emails sent later by webhooks and jobs (no browser to ask) are
written in it (app/payments/receipts.py, force_locale). Catalogs live in
app/translations/<lang>/; after changing a wrapped string: `make translations` (extract,
update, compile).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, current_app, has_request_context, request
from flask_babel import Babel, get_locale

TRANSLATIONS = Path(__file__).with_name("translations")


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    if has_request_context():
        best = request.accept_languages.best_match(languages)
        if best:
            return str(best)
    return str(current_app.config["DEFAULT_LOCALE"])


def current_locale() -> str:
    """The active locale as Babel names it ("en", "hi", "de")."""
    return str(get_locale() or current_app.config["DEFAULT_LOCALE"])


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", app.config["DEFAULT_LOCALE"])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    Babel(app, locale_selector=select_locale)
    app.jinja_env.globals["current_locale"] = current_locale


def N_(message: str) -> str:
    """Mark a string for translation where it is made (the core, which knows no
    language); templates translate it where it is shown with `_(...)`."""
    return message


# Words the core and the presentation layer hand to customer pages.
CUSTOMER_WORDS = (
    N_("Confirming your payment…"),
    N_("Payment authorized"),
    N_("Payment not completed"),
    N_("Paid"),
    N_("Paid (partially refunded)"),
    N_("Refunded"),
    N_("Payment failed"),
    N_("Checkout expired"),
    N_("Canceled"),
    N_("Thank you for your order"),
    N_("Your order"),
    N_("Page not found"),
    N_("There is nothing at this address. Check the link, or start again from the shop."),
    N_("This payment link has been turned off by the shop."),
    N_("This payment link has expired. Ask the shop for a new one."),
    N_("This payment link has already been used."),
    N_("Your card was declined."),
    N_("Your card has insufficient funds."),
    # Signed links' refusals (app/payments/charges.py, customers.py), shown as they are.
    N_("This link has expired; ask the shop for a new one."),
    N_("This link has expired; the link in your latest receipt works."),
)

# A merchant user's role, shown beside their email in the dashboard.
ROLE_WORDS = (N_("Owner"), N_("Admin"), N_("Viewer"))
