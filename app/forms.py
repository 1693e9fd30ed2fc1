"""Validators shared by the page forms (WTForms)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from wtforms.validators import ValidationError

from app.inputs import has_control


class NoControlCharacters:
    """Names and email addresses hold no control characters (NUL, tabs, line breaks,
    escape sequences): they are printed on receipts, in emails and in the dashboard."""

    def __init__(self, message: Any = None) -> None:
        self.message = message or _l("Remove the control characters from this field.")

    def __call__(self, form: Any, field: Any) -> None:
        if isinstance(field.data, str) and has_control(field.data):
            raise ValidationError(self.message)
