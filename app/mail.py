"""Sending one email: by SMTP when MAIL_SERVER is set, else into instance/outbox/*.eml.

Receipts, password resets and merchant notifications all leave through `deliver`, so
the development outbox holds every message the app would have sent.
"""

from __future__ import annotations

import re
import smtplib
from email.message import EmailMessage
from pathlib import Path

from flask import current_app


def new_message(to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
    """A plain-text message (with an HTML alternative when given) from the default sender."""
    msg = EmailMessage()
    msg["From"] = current_app.config.get("MAIL_DEFAULT_SENDER") or "receipts@kassa.localhost"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def outbox_dir() -> Path:
    return Path(current_app.instance_path) / "outbox"


def deliver_all(messages: list[tuple[EmailMessage, str]]) -> list[Exception | None]:
    """Send several messages (each with its outbox name, as deliver()) over one SMTP
    connection; what each one's sending raised, or None, in their order. A connection
    that fails fails the messages not yet sent."""
    server = current_app.config.get("MAIL_SERVER")
    if not server or len(messages) < 2:
        results: list[Exception | None] = []
        for message, name in messages:
            try:
                deliver(message, name)
                results.append(None)
            except Exception as exc:  # noqa: BLE001 - reported per message
                results.append(exc)
        return results
    results = []
    try:
        port = int(current_app.config.get("MAIL_PORT") or 587)
        with smtplib.SMTP(server, port, timeout=10) as smtp:
            if current_app.config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if current_app.config.get("MAIL_USERNAME"):
                smtp.login(current_app.config["MAIL_USERNAME"], current_app.config["MAIL_PASSWORD"])
            for message, _name in messages:
                try:
                    smtp.send_message(message)
                    results.append(None)
                except smtplib.SMTPRecipientsRefused as exc:  # this message only
                    results.append(exc)
    except Exception as exc:  # noqa: BLE001 - the connection: the rest were not sent
        results.extend([exc] * (len(messages) - len(results)))
    return results


def deliver(message: EmailMessage, name: str) -> None:
    """Send the message; `name` names its outbox file (the same name overwrites, so a
    resend after a crash never leaves two)."""
    server = current_app.config.get("MAIL_SERVER")
    if server:
        port = int(current_app.config.get("MAIL_PORT") or 587)
        with smtplib.SMTP(server, port, timeout=10) as smtp:
            if current_app.config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if current_app.config.get("MAIL_USERNAME"):
                smtp.login(current_app.config["MAIL_USERNAME"], current_app.config["MAIL_PASSWORD"])
            smtp.send_message(message)
        return
    outbox = outbox_dir()
    outbox.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", name)[:180]
    (outbox / f"{safe}.eml").write_bytes(bytes(message))
