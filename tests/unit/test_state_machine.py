"""The payment state machine, tested as tables: every (current, reported) pair, and every
delivery order of a set of events ends in the same state."""

import itertools

import pytest

from app.models import PaymentStatus as P
from app.payments.state import (
    AUTHORIZATION_END_RANK,
    PAYMENT_RANK,
    PAYMENT_TRANSITIONS,
    Outcome,
    payment_outcome,
)

GATEWAY_REPORTED = [
    P.CREATED,
    P.PROCESSING,
    P.REQUIRES_ACTION,
    P.AUTHORIZED,
    P.SUCCEEDED,
    P.FAILED,
    P.CANCELED,
    P.EXPIRED,
]

# (current, reported) -> expected outcome, written out by hand: this is the spec.
A, D, S, I = Outcome.APPLIED, Outcome.DUPLICATE, Outcome.STALE, Outcome.INVALID
EXPECTED = {
    P.CREATED: {
        P.CREATED: D,
        P.PROCESSING: A,
        P.REQUIRES_ACTION: A,
        P.AUTHORIZED: A,
        P.SUCCEEDED: A,
        P.FAILED: A,
        P.CANCELED: A,
        P.EXPIRED: A,
    },
    P.PROCESSING: {
        P.CREATED: S,
        P.PROCESSING: D,
        P.REQUIRES_ACTION: A,
        P.AUTHORIZED: A,
        P.SUCCEEDED: A,
        P.FAILED: A,
        P.CANCELED: A,
        P.EXPIRED: A,
    },
    P.REQUIRES_ACTION: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: D,
        P.AUTHORIZED: A,
        P.SUCCEEDED: A,
        P.FAILED: A,
        P.CANCELED: A,
        P.EXPIRED: A,
    },
    P.FAILED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: A,
        P.SUCCEEDED: A,
        P.FAILED: D,
        P.CANCELED: A,
        P.EXPIRED: A,
    },
    P.EXPIRED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: A,
        P.SUCCEEDED: A,
        P.FAILED: S,
        P.CANCELED: A,
        P.EXPIRED: D,
    },
    P.CANCELED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: A,
        P.SUCCEEDED: A,
        P.FAILED: S,
        P.CANCELED: D,
        P.EXPIRED: S,
    },
    P.AUTHORIZED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: D,
        P.SUCCEEDED: A,
        P.FAILED: S,
        P.CANCELED: S,
        P.EXPIRED: S,
    },
    P.SUCCEEDED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: S,
        P.SUCCEEDED: D,
        P.FAILED: S,
        P.CANCELED: S,
        P.EXPIRED: S,
    },
    # Refund states count as "succeeded" for gateway status reports.
    P.PARTIALLY_REFUNDED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: S,
        P.SUCCEEDED: D,
        P.FAILED: S,
        P.CANCELED: S,
        P.EXPIRED: S,
    },
    P.REFUNDED: {
        P.CREATED: S,
        P.PROCESSING: S,
        P.REQUIRES_ACTION: S,
        P.AUTHORIZED: S,
        P.SUCCEEDED: D,
        P.FAILED: S,
        P.CANCELED: S,
        P.EXPIRED: S,
    },
}


@pytest.mark.parametrize(
    ("current", "reported"), [(c, r) for c in EXPECTED for r in GATEWAY_REPORTED]
)
def test_every_pair(current: P, reported: P) -> None:
    assert payment_outcome(current, reported) is EXPECTED[current][reported]


@pytest.mark.parametrize("current", list(P))
@pytest.mark.parametrize("target", [P.PARTIALLY_REFUNDED, P.REFUNDED])
def test_refund_states_never_come_from_status_reports(current: P, target: P) -> None:
    assert payment_outcome(current, target) is Outcome.INVALID


def test_table_only_moves_forward() -> None:
    for current, targets in PAYMENT_TRANSITIONS.items():
        for target in targets:
            # Leaving an authorization unpaid is its end (voided/lapsed), ranked above it.
            ended = current == P.AUTHORIZED and target in AUTHORIZATION_END_RANK
            after = AUTHORIZATION_END_RANK[target] if ended else PAYMENT_RANK[target]
            assert after > PAYMENT_RANK[current], (current, target)


# An authorization's end, as the adapters report it (status + authorization_ended).
VOIDED, LAPSED = (P.CANCELED, True), (P.EXPIRED, True)


def _report(event: P | tuple[P, bool]) -> tuple[P, bool]:
    return event if isinstance(event, tuple) else (event, False)


def _final(events: tuple[P | tuple[P, bool], ...]) -> tuple[P, bool]:
    """The stored state after `events`: (status, its authorization ended)."""
    state, ended = P.CREATED, False
    for event in events:
        target, target_ended = _report(event)
        outcome = payment_outcome(state, target, current_ended=ended, target_ended=target_ended)
        if outcome is Outcome.APPLIED:
            state, ended = target, target_ended and target in AUTHORIZATION_END_RANK
    return state, ended


@pytest.mark.parametrize(
    ("current", "current_ended", "target", "target_ended", "outcome"),
    [
        # #17: an authorization voided or lapsed leaves authorized (it used to be "stale").
        (P.AUTHORIZED, False, P.CANCELED, True, A),
        (P.AUTHORIZED, False, P.EXPIRED, True, A),
        # A checkout's own cancel or expiry is older news than the authorization.
        (P.AUTHORIZED, False, P.CANCELED, False, S),
        (P.AUTHORIZED, False, P.EXPIRED, False, S),
        # After the end, the authorization's own report is older news ...
        (P.CANCELED, True, P.AUTHORIZED, False, S),
        (P.EXPIRED, True, P.AUTHORIZED, False, S),
        # ... while a capture that still lands wins (money wins).
        (P.CANCELED, True, P.SUCCEEDED, False, A),
        (P.EXPIRED, True, P.SUCCEEDED, False, A),
        (P.SUCCEEDED, False, P.CANCELED, True, S),
        (P.REFUNDED, False, P.EXPIRED, True, S),
        # A void outranks a lapse; each again is a duplicate.
        (P.EXPIRED, True, P.CANCELED, True, A),
        (P.CANCELED, True, P.EXPIRED, True, S),
        (P.CANCELED, True, P.CANCELED, True, D),
        (P.EXPIRED, True, P.EXPIRED, True, D),
        # The end arriving before the authorization (any order): it applies from open states.
        (P.PROCESSING, False, P.CANCELED, True, A),
        (P.CREATED, False, P.EXPIRED, True, A),
        (P.CANCELED, False, P.CANCELED, True, A),  # the plain cancel learns it was a void
        (P.CANCELED, True, P.CANCELED, False, S),
        (P.FAILED, False, P.EXPIRED, True, A),
    ],
)
def test_authorization_ends(
    current: P, current_ended: bool, target: P, target_ended: bool, outcome: Outcome
) -> None:
    assert (
        payment_outcome(current, target, current_ended=current_ended, target_ended=target_ended)
        is outcome
    )


def test_final_state_never_depends_on_delivery_order_with_authorization_ends() -> None:
    reports: list[P | tuple[P, bool]] = [*GATEWAY_REPORTED, VOIDED, LAPSED]
    for size in range(1, 6):
        for subset in itertools.combinations(reports, size):
            finals = {_final(order) for order in itertools.permutations(subset)}
            assert len(finals) == 1, (subset, finals)
            doubled = {_final(order + order) for order in itertools.permutations(subset)}
            assert doubled == finals


def test_final_state_never_depends_on_delivery_order() -> None:
    # Every subset of up to five distinct reports, in every order, twice over.
    for size in range(1, 6):
        for subset in itertools.combinations(GATEWAY_REPORTED, size):
            finals = {_final(order) for order in itertools.permutations(subset)}
            assert len(finals) == 1, (subset, finals)
            doubled = {_final(order + order) for order in itertools.permutations(subset)}
            assert doubled == finals


@pytest.mark.parametrize(
    ("events", "final"),
    [
        ((P.PROCESSING, P.SUCCEEDED), P.SUCCEEDED),
        ((P.SUCCEEDED, P.PROCESSING), P.SUCCEEDED),
        ((P.FAILED, P.SUCCEEDED), P.SUCCEEDED),  # late money wins
        ((P.EXPIRED, P.FAILED), P.EXPIRED),
        ((P.FAILED, P.EXPIRED), P.EXPIRED),
        ((P.AUTHORIZED, P.PROCESSING, P.SUCCEEDED), P.SUCCEEDED),
        ((P.PROCESSING, P.FAILED), P.FAILED),
        ((P.AUTHORIZED, VOIDED), P.CANCELED),
        ((VOIDED, P.AUTHORIZED), P.CANCELED),
        ((P.AUTHORIZED, LAPSED, P.SUCCEEDED), P.SUCCEEDED),
        ((P.AUTHORIZED, P.CANCELED), P.AUTHORIZED),
        ((P.REQUIRES_ACTION, P.SUCCEEDED), P.SUCCEEDED),
        ((P.REQUIRES_ACTION, P.PROCESSING), P.REQUIRES_ACTION),
        ((P.PROCESSING, P.REQUIRES_ACTION, P.FAILED), P.FAILED),
    ],
)
def test_known_sequences(events: tuple[P | tuple[P, bool], ...], final: P) -> None:
    assert _final(events)[0] is final


@pytest.mark.parametrize(
    ("expected", "target"),
    [(c, r) for c in EXPECTED for r in GATEWAY_REPORTED if (c, r) != (P.CREATED, P.PROCESSING)],
)
def test_only_opening_an_attempt_is_stored_by_compare_and_set(expected: P, target: P) -> None:
    """Any move with consequences (timestamps, the order, stock) goes through
    transition_payment on a locked row; the compare-and-set is only for opening one."""
    from app.payments.state import _moves_by_compare_and_set

    assert _moves_by_compare_and_set(P.CREATED, P.PROCESSING)
    assert not _moves_by_compare_and_set(expected, target)


@pytest.mark.parametrize(
    ("current", "target", "changed", "outcome"),
    [
        (P.SUCCEEDED, P.PARTIALLY_REFUNDED, True, Outcome.APPLIED),
        (P.PARTIALLY_REFUNDED, P.PARTIALLY_REFUNDED, True, Outcome.APPLIED),
        (P.PARTIALLY_REFUNDED, P.REFUNDED, True, Outcome.APPLIED),
        (P.REFUNDED, P.PARTIALLY_REFUNDED, True, Outcome.APPLIED),  # a refund failed later
        (P.PARTIALLY_REFUNDED, P.SUCCEEDED, True, Outcome.APPLIED),
        (P.SUCCEEDED, P.SUCCEEDED, False, Outcome.DUPLICATE),
        (P.REFUNDED, P.REFUNDED, False, Outcome.DUPLICATE),
        (P.AUTHORIZED, P.REFUNDED, True, Outcome.INVALID),  # no money taken: nothing moves
        (P.FAILED, P.PARTIALLY_REFUNDED, True, Outcome.INVALID),
    ],
)
def test_refund_totals_move_only_captured_payments(
    current: P, target: P, changed: bool, outcome: Outcome
) -> None:
    from app.payments.state import refund_totals_outcome

    assert refund_totals_outcome(current, target, changed) is outcome
