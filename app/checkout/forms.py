from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, IntegerField, RadioField, StringField
from wtforms.validators import Email, InputRequired, Length, NumberRange


class CheckoutForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            InputRequired("Enter your email address."),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    name = StringField("Full name", validators=[InputRequired("Enter your name."), Length(max=200)])
    quantity = IntegerField(
        "Quantity",
        default=1,
        validators=[
            InputRequired("Enter a quantity."),
            NumberRange(min=1, max=99, message="Choose a quantity between 1 and 99."),
        ],
    )
    gateway = RadioField("Pay with", validators=[InputRequired("Choose how to pay.")])


class RetryForm(FlaskForm):
    gateway = RadioField("Pay with", validators=[InputRequired("Choose how to pay.")])


class CartCheckoutForm(FlaskForm):
    """Who is paying for the cart, and how (the items come from the cart)."""

    email = EmailField(
        "Email",
        validators=[
            InputRequired("Enter your email address."),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    name = StringField("Full name", validators=[InputRequired("Enter your name."), Length(max=200)])
    gateway = RadioField("Pay with", validators=[InputRequired("Choose how to pay.")])
