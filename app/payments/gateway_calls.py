"""One gateway call about one row: what happens when the gateway fails.

Every core service that asks a gateway something does the same on failure: lock the row
the call was about, record the failure on it in its own unit of work (an audit entry, or
a state change for a definitive refusal), then tell the caller: PaymentGatewayFailed for
the doors to answer, or the error itself when the service carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from app.gateways.base import GatewayError, gateway_code
from app.models import Refund
from app.payments import audit
from app.payments.audit import Actor
from app.payments.errors import PaymentGatewayFailed
from app.payments.uow import lock, unit_of_work

T = TypeVar("T")


@dataclass(slots=True)
class Call:
    """What a call inside gateway_errors(raises=False) came to: its error, if any."""

    error: GatewayError | None = None


@contextmanager
def gateway_errors(
    row: tuple[type[T], int] | None = None,
    actor: Actor | None = None,
    audit_as: str | None = None,
    *,
    keep: Callable[[T, GatewayError], None] | None = None,
    refused: Callable[[T, GatewayError], None] | None = None,
    raises: bool = True,
    for_customer: bool = False,
) -> Iterator[Call]:
    """Around a gateway call. When it raises GatewayError and `row` (model, id) is given,
    that row is locked in a new unit of work; `keep(row, error)` stores what the row keeps
    of it; a definitive refusal (not retryable) goes to `refused(row, error)` when given,
    anything else is audited as `audit_as` with the code and message.

    Then PaymentGatewayFailed is raised (with the message a customer is shown for the
    code when `for_customer`, else the gateway's), unless `raises` is False: then the
    block just ends and `Call.error` holds the error.
    """
    call = Call()
    try:
        yield call
    except GatewayError as exc:
        if row is not None:
            _record(row, exc, actor, audit_as, keep, refused)
        if not raises:
            call.error = exc
            return
        message = gateway_code(exc.code).customer_message(exc.message) if for_customer else None
        raise PaymentGatewayFailed(exc.code, message or exc.message) from exc


def _record(
    row: tuple[type[T], int],
    exc: GatewayError,
    actor: Actor | None,
    audit_as: str | None,
    keep: Callable[[T, GatewayError], None] | None,
    refused: Callable[[T, GatewayError], None] | None,
) -> None:
    model, row_id = row
    with unit_of_work():
        locked = lock(model, id=row_id)
        if locked is None:
            return
        if keep is not None:
            keep(locked, exc)
        if refused is not None and not exc.retryable:
            refused(locked, exc)
        elif audit_as is not None and actor is not None:
            links: dict[str, Any] = (
                {"payment": locked.payment} if isinstance(locked, Refund) else {}
            )
            audit.record(
                actor,
                audit_as,
                locked,
                details={"code": exc.code, "message": exc.message},
                **links,
            )
