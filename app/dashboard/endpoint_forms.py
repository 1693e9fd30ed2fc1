"""Forms of the webhook endpoint pages and the fulfilment panel."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from app.dashboard.forms import options
from app.payments.outbox import SUBSCRIBABLE


class EndpointForm(FlaskForm):
    url = StringField(
        "URL",
        validators=[InputRequired("Give the URL that receives the events."), Length(max=2000)],
        description="An https:// address of yours; private and loopback addresses are refused.",
    )
    description = StringField("Description", validators=[Optional(), Length(max=200)])
    event_types = SelectMultipleField(
        "Events",
        choices=options([(t, t) for t in SUBSCRIBABLE]),
        validators=[Optional()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        description="None ticked: every event.",
    )


class RecoverForm(FlaskForm):
    since = DateTimeLocalField(
        "Failed since (UTC)",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired("Pick a time.")],
    )


class FulfillmentForm(FlaskForm):
    note = TextAreaField(
        "Note for the customer",
        validators=[Optional(), Length(max=500)],
        description="Optional, e.g. the carrier and tracking number.",
    )
