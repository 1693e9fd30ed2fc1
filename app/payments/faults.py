"""Fault injection for crash tests: die (or stall) at a named point.

KASSA_FAULT_POINT (setting FAULT_POINT) names one point, e.g. "after_gateway_checkout":
the process calls os._exit(1) there — right after the gateway acted and before our
commit — exactly the crash that reconciliation must repair. "<point>:sleep=<seconds>"
stalls instead (a worker killed mid-task); "<point>:raise" raises (a failing job). KASSA_FAULT_MARKER, when set, is a file
touched on arrival so a test knows the process got there. Production refuses to start
with a fault point set (app/config.py).

Points: after_gateway_checkout, after_gateway_capture, after_gateway_refund,
after_gateway_return (the return page asked the gateway, e.g. PayPal captured),
webhook_process (inside the inbox transaction, before its commit), outbox_relay (the
relay, after the change it reports committed, before dispatching), after_webhook_delivery
(an outgoing webhook sent, its answer not yet recorded).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import current_app


def hit(point: str) -> None:
    """Called at each point; does nothing unless this point was asked for."""
    spec = current_app.config.get("FAULT_POINT") or os.environ.get("KASSA_FAULT_POINT")
    if not spec:
        return
    name, _, action = spec.partition(":")
    if name != point:
        return
    marker = os.environ.get("KASSA_FAULT_MARKER")
    if marker:
        Path(marker).write_text(f"{point} {os.getpid()}\n")
    if action.startswith("sleep="):
        time.sleep(float(action.split("=", 1)[1]))
        return
    if action == "raise":
        raise RuntimeError(f"injected fault at {point}")
    os._exit(1)  # no cleanup, no commit, no rollback: a crash
