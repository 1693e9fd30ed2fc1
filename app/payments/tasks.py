"""Imported by app.jobs.init_app so every job name is registered."""

from app import notifications
from app.payments import events, receipts, reconcile

__all__ = ["events", "notifications", "receipts", "reconcile"]
