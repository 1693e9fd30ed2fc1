"""Imported by app.jobs.init_app so every job name is registered."""

from app import notifications
from app.payments import charges, events, outbox, receipts, reconcile
from app.payments.outgoing import delivery

__all__ = ["charges", "delivery", "events", "notifications", "outbox", "receipts", "reconcile"]
