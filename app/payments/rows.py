"""Rows sent to PostgreSQL as JSON, so that several inserts make ONE statement.

The checkout benchmark is bound by CPU, and every statement costs it three times: in
SQLAlchemy, in psycopg and in the server. On PostgreSQL the checkout's writes go out as
data-modifying CTEs whose rows arrive as one JSON parameter each and are typed by the
table itself (json_populate_record); SQLite takes one INSERT per row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Table


def insert_from_json(table: Table, source: str, links: dict[str, str]) -> str:
    """INSERT INTO table (every column but id) SELECT them from `source`, a JSON row or
    recordset aliased r; `links` takes columns from earlier statements instead."""
    columns = [c.name for c in table.columns if c.name != "id"]
    picks = ", ".join(links.get(c, f"r.{c}") for c in columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {picks} FROM {source}"


def to_json(value: Any) -> str:
    return json.dumps(
        value,
        separators=(",", ":"),
        default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v),
    )
