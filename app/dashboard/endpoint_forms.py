"""Forms of the webhook endpoint pages and the fulfilment panel."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.dashboard.forms import options
from app.payments.outbox import SUBSCRIBABLE


class EndpointForm(FlaskForm):
    url = StringField(
        _l("URL"),
        validators=[InputRequired(_l("Give the URL that receives the events.")), Length(max=2000)],
        description=_l("An https:// address of yours; private and loopback addresses are refused."),
    )
    description = StringField(_l("Description"), validators=[Optional(), Length(max=200)])
    event_types = SelectMultipleField(
        _l("Events"),
        choices=options([(t, t) for t in SUBSCRIBABLE]),
        validators=[Optional()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        description=_l("None ticked: every event."),
    )


class RecoverForm(FlaskForm):
    since = DateTimeLocalField(
        _l("Failed since (UTC)"),
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired(_l("Pick a time."))],
    )


class FulfillmentForm(FlaskForm):
    note = TextAreaField(
        _l("Note for the customer"),
        validators=[Optional(), Length(max=500)],
        description=_l("Optional, e.g. the carrier and tracking number."),
    )
