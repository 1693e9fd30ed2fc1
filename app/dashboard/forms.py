"""Dashboard forms: list filters (GET, no CSRF), refund, API keys, CSRF-only buttons."""

from __future__ import annotations

import secrets
from typing import Any, cast

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    SearchField,
    SelectField,
    StringField,
)

# types-wtforms (3.2) predates SelectChoice, new in WTForms 3.3.
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from app import inputs
from app.dashboard.queries import SORTS, PaymentFilters
from app.i18n import current_locale
from app.models import ApiKeyScope, WebhookStatus
from app.money import Money, MoneyError, decimal_separator, exponent
from app.presentation import filter_statuses, status_label


def options(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """(value, label) pairs as WTForms choices (tuples are deprecated in WTForms 3.3)."""
    return [SelectChoice(value, label) for value, label in pairs]


def day_in_range(form: FlaskForm, field: DateField) -> None:
    """A day whose whole span can be searched (9999-12-31 has no next day to end at)."""
    if field.data is not None and not inputs.day_in_range(field.data):
        raise ValidationError(_l("Choose a date before 9999-12-31."))


class FilterForm(FlaskForm):
    """The payments list's filters: a plain GET form, so filtered views are links."""

    class Meta:
        csrf = False  # reading only; GET parameters

    q = SearchField(
        _l("Search"),
        validators=[Optional(), Length(max=254)],
        description=_l("Payment id, order id, gateway id or customer email"),
    )
    status = SelectField(_l("Status"), validators=[Optional()])
    gateway = SelectField(_l("Gateway"), validators=[Optional()])
    currency = SelectField(_l("Currency"), validators=[Optional()])
    date_from = DateField(_l("From"), name="from", validators=[Optional(), day_in_range])
    date_to = DateField(_l("To"), name="to", validators=[Optional(), day_in_range])
    sort = SelectField(
        _l("Sort"),
        choices=options([(key, _l(label)) for key, label in SORTS.items()]),
        validators=[Optional()],
    )

    def __init__(
        self, *args: Any, gateways: list[str], currencies: list[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.status.choices = options(
            [("", _l("Any status"))] + [(s, status_label(s)) for s in filter_statuses()]
        )
        self.gateway.choices = options(
            [("", _l("Any gateway"))] + [(g, g.capitalize()) for g in gateways]
        )
        self.currency.choices = options([("", _l("Any currency"))] + [(c, c) for c in currencies])

    def filters(self) -> PaymentFilters:
        """Valid filters only: a bad value is dropped (and shown as an error)."""

        def pick(f: SelectField) -> str | None:
            # Set by options() above; types-wtforms (3.2) knows only the older tuple forms.
            choices = cast("list[SelectChoice]", f.choices)
            values = {c.value for c in choices}
            return f.data if f.data and f.data in values and not f.errors else None

        date_from = self.date_from.data if not self.date_from.errors else None
        date_to = self.date_to.data if not self.date_to.errors else None
        return PaymentFilters(
            status=pick(self.status),
            gateway=pick(self.gateway),
            currency=pick(self.currency),
            date_from=date_from,
            date_to=date_to,
            q=(self.q.data or "").strip()[:254] if not self.q.errors else "",
            sort=self.sort.data if self.sort.data in SORTS else "newest",
        )


REFUND_REASONS = [
    ("requested_by_customer", _l("Requested by the customer")),
    ("duplicate", _l("Duplicate payment")),
    ("fraudulent", _l("Fraudulent")),
    ("other", _l("Other")),
]


class RefundForm(FlaskForm):
    """Refund part or all of a payment; a token minted at render time makes a repeated
    submission of the same form refund once."""

    amount = StringField(_l("Amount to refund"), validators=[InputRequired(_l("Enter an amount."))])
    reason = SelectField(
        _l("Reason"),
        choices=options(REFUND_REASONS),
        validators=[InputRequired(_l("Pick a reason."))],
    )
    token = HiddenField()
    confirm = HiddenField()

    def __init__(
        self,
        *args: Any,
        currency: str,
        remaining: int,
        locale: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.remaining = remaining
        # Amounts are typed with the decimal separator of the language the page shows
        # amounts in ("0,50" in German, "0.50" in English): one grammar (Money.parse).
        self.locale = locale or current_locale()
        self.amount_minor: int | None = None
        if not self.token.data:
            self.token.data = secrets.token_urlsafe(16)
        if self.amount.data is None:
            self.amount.data = (
                Money(remaining, currency).to_input_string(self.locale) if remaining else ""
            )

    @property
    def example(self) -> str:
        """How an amount is typed here, for the hint ("12.50", "12,50", "1250")."""
        return Money(
            1250 * 10 ** max(0, exponent(self.currency) - 2), self.currency
        ).to_input_string(self.locale)

    def validate_amount(self, field: StringField) -> None:
        try:
            money = Money.parse(field.data or "", self.currency, self.locale)
        except MoneyError as exc:
            raise ValidationError(gettext(exc.template, **exc.params)) from None
        if money.amount_minor <= 0:
            raise ValidationError(_l("Enter an amount greater than zero."))
        if money.amount_minor > self.remaining:
            left = Money(self.remaining, self.currency).format()
            raise ValidationError(gettext("At most %(amount)s can still be refunded.", amount=left))
        self.amount_minor = money.amount_minor

    def validate_token(self, field: HiddenField) -> None:
        value = field.data or ""
        if not (8 <= len(value) <= 40) or not value.replace("-", "").replace("_", "").isalnum():
            raise ValidationError(_l("This form has expired; reload the page."))


class ApiKeyForm(FlaskForm):
    name = StringField(
        _l("Name"),
        validators=[InputRequired(_l("Give the key a name.")), Length(max=100)],
        description=_l("What uses this key, e.g. “shop backend”."),
    )
    scope = SelectField(
        _l("Access"),
        choices=options(
            [
                (ApiKeyScope.WRITE.value, _l("Read and write")),
                (ApiKeyScope.READ.value, _l("Read only")),
            ]
        ),
    )


class WebhookFilterForm(FlaskForm):
    class Meta:
        csrf = False

    status = SelectField(
        _l("Status"),
        validators=[Optional()],
        choices=options(
            [("", _l("Any status"))] + [(s.value, s.value.capitalize()) for s in WebhookStatus]
        ),
    )
    gateway = SelectField(_l("Gateway"), validators=[Optional()])
    before = IntegerField(
        _l("Before"), validators=[Optional(), NumberRange(min=1, max=inputs.MAX_ROW_ID)]
    )


class CustomerPageForm(FlaskForm):
    """The customers list's query string: an exact email, and where a page starts."""

    class Meta:
        csrf = False

    email = StringField(_l("Email"), validators=[Optional(), Length(max=254)])
    before = IntegerField(
        _l("Before"), validators=[Optional(), NumberRange(min=1, max=inputs.MAX_ROW_ID)]
    )


class SetupLinkForm(FlaskForm):
    """Send the customer a link to save a card without paying: which gateway, and the
    currency later charges will be in (the gateway offers the methods that work in it)."""

    gateway = SelectField(_l("Gateway"), validators=[InputRequired()])
    currency = StringField(
        _l("Currency"), validators=[Optional(), Length(3, 3, _l("A three-letter code."))]
    )


class ButtonForm(FlaskForm):
    """CSRF-only form for buttons that POST (capture, sync, reprocess, revoke)."""


class PlanChangeForm(FlaskForm):
    """Move a subscription to another plan: the first POST asks for confirmation, the
    confirmed one changes it. `from_plan` is the plan the page showed, so a repeated
    submission of the same form changes the plan once."""

    plan = SelectField(_l("New plan"), validators=[InputRequired(_l("Pick a plan."))])
    from_plan = HiddenField(validators=[InputRequired()])
    confirm = HiddenField()


class PaymentLinkForm(FlaskForm):
    """A payment link: a catalog product, or a custom amount with a description."""

    description = StringField(
        _l("What the customer pays for"),
        validators=[InputRequired(_l("Describe what is being paid for.")), Length(max=200)],
        description=_l("Shown on the payment page and the receipt, e.g. “Deposit for order 1042”."),
    )
    sku = SelectField(_l("Product"), validators=[Optional()])
    quantity = IntegerField(
        _l("Quantity"),
        default=1,
        validators=[Optional(), NumberRange(1, 99, _l("Between 1 and 99."))],
    )
    amount = StringField(_l("Custom amount"), validators=[Length(max=30)])
    currency = StringField(_l("Currency"), default="USD", validators=[Optional(), Length(max=3)])
    reusable = BooleanField(_l("Reusable (any number of customers may pay)"))
    expires_on = DateField(_l("Expires after (optional)"), validators=[Optional()])

    def __init__(
        self,
        *args: Any,
        products: list[tuple[str, str]],
        locale: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sku.choices = options([("", _l("A custom amount (below)"))] + products)
        self.locale = locale or current_locale()
        self.amount_minor: int | None = None

    @property
    def example(self) -> str:
        """A custom amount as typed here ("49.00", "49,00")."""
        return "49" + decimal_separator(self.locale) + "00"

    def validate_amount(self, field: StringField) -> None:
        if self.sku.data:
            return
        if not (field.data or "").strip():
            raise ValidationError(_l("Enter the amount, or choose a product."))
        try:
            money = Money.parse(field.data or "", self.currency.data or "", self.locale)
        except MoneyError as exc:
            raise ValidationError(gettext(exc.template, **exc.params)) from None
        if money.amount_minor <= 0:
            raise ValidationError(_l("Enter an amount greater than zero."))
        self.amount_minor = money.amount_minor


class ChargeForm(FlaskForm):
    """Charge a saved method: the amount, then a confirmation step. The hidden key is made
    when the form is first shown, so a double submit (or a resend) charges once."""

    amount = StringField(
        _l("Amount"), validators=[InputRequired(_l("Enter the amount.")), Length(max=30)]
    )
    currency = StringField(
        _l("Currency"),
        default="USD",
        validators=[InputRequired(_l("Enter the currency.")), Length(3, 3)],
    )
    description = StringField(
        _l("What the customer is charged for"),
        validators=[InputRequired(_l("Describe what the charge is for.")), Length(max=200)],
    )
    key = HiddenField(validators=[InputRequired(), Length(16, 80)])
    confirmed = HiddenField(default="")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.key.data:
            self.key.data = secrets.token_urlsafe(24)
        self.amount_minor: int | None = None

    def validate_amount(self, field: StringField) -> None:
        try:
            money = Money.parse(field.data or "", self.currency.data or "")
        except MoneyError as exc:
            raise ValidationError(gettext(exc.template, **exc.params)) from None
        if money.amount_minor <= 0:
            raise ValidationError(_l("Enter an amount greater than zero."))
        self.amount_minor = money.amount_minor
