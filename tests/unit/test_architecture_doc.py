"""docs/ARCHITECTURE.md's state tables are the code's: the doc cannot drift from state.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from app.models.enums import (
    DisputeStatus,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    SubscriptionStatus,
)
from app.payments import state

DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"

# The moves a dispute may make: to a strictly higher rank (transition_dispute).
DISPUTE_TRANSITIONS = {
    current: frozenset(
        t for t in DisputeStatus if state.DISPUTE_RANK[t] > state.DISPUTE_RANK[current]
    )
    for current in DisputeStatus
}

TABLES: dict[str, tuple[type[StrEnum], Mapping[Any, frozenset[Any]]]] = {
    "payment": (PaymentStatus, state.PAYMENT_TRANSITIONS),
    "order": (OrderStatus, state.ORDER_TRANSITIONS),
    "refund": (RefundStatus, state.REFUND_TRANSITIONS),
    "dispute": (DisputeStatus, DISPUTE_TRANSITIONS),
    "subscription": (SubscriptionStatus, state.SUBSCRIPTION_TRANSITIONS),
}

_ROW = re.compile(r"^\|\s*`(?P<source>[a-z_]+)`\s*\|\s*(?P<targets>[^|]*?)\s*\|$")


def doc_table(name: str, text: str) -> dict[str, frozenset[str]]:
    """The rows of the table after `<!-- state-table: name -->`: from -> may move to."""
    marker = f"<!-- state-table: {name} -->"
    assert text.count(marker) == 1, f"{marker} must appear exactly once in {DOC.name}"
    lines = text.split(marker, 1)[1].strip().splitlines()
    assert lines[:2] == ["| from | may move to |", "| --- | --- |"], lines[:2]
    rows: dict[str, frozenset[str]] = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        match = _ROW.match(line.strip())
        assert match, f"unreadable row in the {name} table: {line!r}"
        targets = match["targets"]
        if targets == "—":
            found: frozenset[str] = frozenset()
        else:
            names = [re.fullmatch(r"`([a-z_]+)`", t.strip()) for t in targets.split(",")]
            assert all(names), f"unreadable targets in the {name} table: {line!r}"
            found = frozenset(n[1] for n in names if n)
        assert match["source"] not in rows, f"{match['source']} twice in the {name} table"
        rows[match["source"]] = found
    return rows


@pytest.mark.parametrize("name", sorted(TABLES))
def test_doc_state_table_equals_the_code(name: str) -> None:
    enum, transitions = TABLES[name]
    in_code = {
        str(source.value): frozenset(str(t.value) for t in transitions.get(source, ()))
        for source in enum
    }
    assert doc_table(name, DOC.read_text(encoding="utf-8")) == in_code


def test_a_drifted_row_is_caught() -> None:
    text = DOC.read_text(encoding="utf-8")
    drifted = text.replace(
        "| `authorized` | `succeeded`, `canceled`, `expired` |", "| `authorized` | `refunded` |", 1
    )
    assert drifted != text
    assert doc_table("payment", drifted)["authorized"] == {"refunded"}
    assert doc_table("payment", drifted) != doc_table("payment", text)
