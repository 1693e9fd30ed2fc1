"""Sending email: SMTP when MAIL_SERVER is set, else .eml files in instance/outbox/.

Receipts (app/payments/receipts.py) and the merchant's notices (an endpoint disabled)
go out through here, so there is one place that knows the transport.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from flask import current_app


def send(message: EmailMessage, filename: str) -> None:
    """Send `message`; without SMTP write it to instance/outbox/<filename>.eml (one file
    per name, so a resend after a crash overwrites rather than duplicates)."""
    config = current_app.config
    server = config.get("MAIL_SERVER")
    if server:
        port = int(config.get("MAIL_PORT") or 587)
        with smtplib.SMTP(server, port, timeout=10) as smtp:
            if config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
            smtp.send_message(message)
        return
    outbox = Path(current_app.instance_path) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / f"{filename}.eml").write_bytes(bytes(message))
