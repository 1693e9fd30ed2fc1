"""Units of work: one transaction per state change, with row locks that work everywhere.

PostgreSQL: rows are locked with SELECT ... FOR UPDATE inside the transaction.
SQLite: a write transaction starts with BEGIN IMMEDIATE (set up in app/db.py), which
takes the database's single write lock up front, so two writers can never interleave
a read and a write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import inspect, select
from sqlalchemy.orm import make_transient_to_detached

from app import jobs
from app.extensions import db

T = TypeVar("T")
_depth = threading.local()


@contextmanager
def unit_of_work() -> Iterator[None]:
    """Run the block in one write transaction; commit, or roll back on error.

    Jobs enqueued inside the block are dispatched only after the commit succeeds.
    A unit of work opened inside another one joins it (one transaction, one commit).
    """
    depth = getattr(_depth, "value", 0)
    if depth:
        _depth.value = depth + 1
        try:
            yield
        finally:
            _depth.value = depth
        return
    session = db.session()
    if session.in_transaction():
        # Close any read transaction left open so the write one can start fresh (and,
        # on SQLite, start as BEGIN IMMEDIATE).
        session.commit()
    session.connection(execution_options={"kassa_write": True})
    jobs.begin_batch()
    _depth.value = 1
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        jobs.discard_batch()
        raise
    finally:
        _depth.value = 0
    jobs.flush_batch()


def release_connection() -> None:
    """End a read-only transaction so its pooled connection is free during a slow call.

    Called before waiting on a gateway: with many request threads per worker, a thread
    that kept its connection for a 250 ms gateway round trip would need a pool as big as
    the thread count (and PostgreSQL allows 100 connections by default). Loaded objects
    are expired and reload in the next transaction.
    """
    session = db.session()
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()


def lock(model: type[T], **filters: object) -> T | None:
    """Load one row with a write lock, refreshing whatever the session had cached."""
    stmt = (
        select(model)
        .filter_by(**filters)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return db.session.execute(stmt).scalars().first()


def lock_all(model: Any, ids: Sequence[int]) -> list[Any]:
    """Load rows by primary key with a write lock, in key order (one statement for a
    batch; the same order in every caller, so two batches never wait on each other in a
    circle), refreshing whatever the session had cached."""
    stmt = (
        select(model)
        .where(model.id.in_(list(ids)))
        .order_by(model.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(db.session.execute(stmt).scalars())


def unloaded(model: type[T], pk: int) -> T:
    """The ORM object of a row known to exist, without reading it: every attribute loads
    on first use, as after a commit. For a row just written with a Core statement, whose
    caller may need only one or two values it already knows (set_committed_value)."""
    session = db.session()
    existing = session.identity_map.get(session.identity_key(model, (pk,)))
    if existing is not None:
        return cast(T, existing)
    mapper = inspect(model)
    obj = mapper.class_manager.new_instance()
    setattr(obj, mapper.primary_key[0].key, pk)
    make_transient_to_detached(obj)
    session.add(obj)
    return cast(T, obj)
