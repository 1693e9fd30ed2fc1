from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length

from app.forms import NoControlCharacters


class LoginForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[InputRequired(_l("Enter your email.")), Length(max=254), NoControlCharacters()],
    )
    password = PasswordField(
        _l("Password"), validators=[InputRequired(_l("Enter your password.")), Length(max=1024)]
    )
    next = HiddenField()


class EmptyForm(FlaskForm):
    """CSRF-only form for buttons that POST (logout, refund confirm...)."""


class TwoFactorForm(FlaskForm):
    code = StringField(
        _l("Code"), validators=[InputRequired(_l("Enter the code.")), Length(max=40)]
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField(
        _l("Email"),
        validators=[InputRequired(_l("Enter your email.")), Length(max=254), NoControlCharacters()],
    )


class ResetPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"),
        validators=[InputRequired(_l("Choose a new password.")), Length(max=1024)],
    )
    confirm = PasswordField(
        _l("New password again"),
        validators=[
            InputRequired(_l("Type the new password again.")),
            EqualTo("password", _l("The two passwords are not the same.")),
        ],
    )
