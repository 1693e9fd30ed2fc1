from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, RadioField, StringField
from wtforms.validators import Email, InputRequired, Length, NumberRange

from app.forms import NoControlCharacters

# Shown beside the choice, word for word: what the customer agrees to by ticking it.
SAVE_CONSENT = _l(
    "The shop keeps a token from the payment provider (never your card number) and may "
    "charge it later for purchases you agree to; you can remove it at any time from the "
    "link in your receipt."
)


def _save_field() -> BooleanField:
    return BooleanField(
        _l("Save this payment method for future purchases"),
        default=False,
        description=SAVE_CONSENT,
    )


class CheckoutForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[
            InputRequired(_l("Enter your email address.")),
            Email(_l("Enter a valid email address.")),
            Length(max=254),
            NoControlCharacters(),
        ],
    )
    name = StringField(
        _l("Full name"),
        validators=[
            InputRequired(_l("Enter your name.")),
            Length(max=200),
            NoControlCharacters(),
        ],
    )
    quantity = IntegerField(
        _l("Quantity"),
        default=1,
        validators=[
            InputRequired(_l("Enter a quantity.")),
            NumberRange(min=1, max=99, message=_l("Choose a quantity between 1 and 99.")),
        ],
    )
    gateway = RadioField(_l("Pay with"), validators=[InputRequired(_l("Choose how to pay."))])
    save_payment_method = _save_field()


class SubscribeForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[
            InputRequired(_l("Enter your email address.")),
            Email(_l("Enter a valid email address.")),
            Length(max=254),
        ],
    )
    name = StringField(
        _l("Full name"), validators=[InputRequired(_l("Enter your name.")), Length(max=200)]
    )
    gateway = RadioField(_l("Pay with"), validators=[InputRequired(_l("Choose how to pay."))])


class RetryForm(FlaskForm):
    gateway = RadioField(_l("Pay with"), validators=[InputRequired(_l("Choose how to pay."))])


class CartCheckoutForm(FlaskForm):
    """Who is paying for the cart, and how (the items come from the cart)."""

    email = EmailField(
        _l("Email"),
        validators=[
            InputRequired(_l("Enter your email address.")),
            Email(_l("Enter a valid email address.")),
            Length(max=254),
            NoControlCharacters(),
        ],
    )
    name = StringField(
        _l("Full name"),
        validators=[
            InputRequired(_l("Enter your name.")),
            Length(max=200),
            NoControlCharacters(),
        ],
    )
    gateway = RadioField(_l("Pay with"), validators=[InputRequired(_l("Choose how to pay."))])
    save_payment_method = _save_field()
