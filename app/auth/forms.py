from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length

from app.forms import NoControlCharacters


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[InputRequired("Enter your email."), Length(max=254), NoControlCharacters()],
    )
    password = PasswordField(
        "Password", validators=[InputRequired("Enter your password."), Length(max=1024)]
    )
    next = HiddenField()


class EmptyForm(FlaskForm):
    """CSRF-only form for buttons that POST (logout, refund confirm...)."""


class TwoFactorForm(FlaskForm):
    code = StringField("Code", validators=[InputRequired("Enter the code."), Length(max=40)])


class ForgotPasswordForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[InputRequired("Enter your email."), Length(max=254), NoControlCharacters()],
    )


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[InputRequired("Choose a new password."), Length(max=1024)],
    )
    confirm = PasswordField(
        "New password again",
        validators=[
            InputRequired("Type the new password again."),
            EqualTo("password", "The two passwords are not the same."),
        ],
    )
