"""Webhook intake under concurrency: deliveries arriving together are committed together
(one transaction for the group) and each is answered only after its row is committed;
duplicates in flight store once; one bad row fails alone; a processing job lost between
the commit and its run is picked up by the periodic sweep."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, insert, select, update

from app.extensions import db
from app.gateways.sandbox import SIGNATURE_HEADER, sign
from app.models import WebhookEvent
from app.models.base import utcnow
from app.payments import events
from app.payments.inbox_writer import InboxWriter, _Slot

SECRET = "whsec_sandbox_test_secret"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_app(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """make_app on SQLite, and on a fresh PostgreSQL database."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None

    def build(**overrides: Any) -> Flask:
        if url:
            overrides.setdefault("SQLALCHEMY_DATABASE_URI", url)
        return make_app(**overrides)

    return build


def signed(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": event_id,
            "type": "payment.succeeded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": f"sbx_cs_{event_id}",
                    "status": "succeeded",
                    "amount": 100,
                    "currency": "USD",
                }
            },
        }
    ).encode()
    return body, {SIGNATURE_HEADER: sign(SECRET, body), "Content-Type": "application/json"}


def stored(app: Flask, event_id: str | None = None) -> int:
    with app.app_context():
        stmt = select(func.count(WebhookEvent.id))
        if event_id is not None:
            stmt = stmt.where(WebhookEvent.event_id == event_id)
        value = db.session.execute(stmt).scalar_one()
        db.session.remove()
        return int(value)


def test_concurrent_deliveries_store_each_event_once_and_commit_before_answering(
    db_app: Callable[..., Flask],
) -> None:
    app = db_app(JOBS_EAGER=False)
    ids = [f"evt_c_{n}" for n in range(20)]
    answers: list[tuple[str, bool, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def sender(k: int) -> None:
        client = app.test_client()
        start.wait()
        for event_id in ids[k::2] + ids[k % 2 :: 4]:  # every event sent by several threads
            body, headers = signed(event_id)
            response = client.post("/webhooks/sandbox", data=body, headers=headers)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.get_data(as_text=True)}")
                continue
            # Answered 200: the row is committed, visible to another connection already.
            in_inbox = stored(app, event_id)
            with lock:
                answers.append((event_id, response.json["duplicate"], in_inbox))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.extensions["kassa_jobs"].wait_idle()

    assert errors == []
    assert all(n == 1 for _, _, n in answers)
    firsts = [event_id for event_id, duplicate, _ in answers if not duplicate]
    assert sorted(firsts) == sorted(ids)  # each stored by exactly one delivery
    assert stored(app) == len(ids)
    with app.app_context():
        assert set(events.counts_by_status()) == {"processed"}


def test_deliveries_that_arrive_during_a_write_are_written_together(
    db_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = db_app()
    with app.app_context():
        writer = events.inbox_writer()
    batches: list[int] = []
    real_insert = writer._insert
    first_write_started = threading.Event()

    def insert(batch: list[_Slot]) -> None:
        batches.append(len(batch))
        if len(batches) == 1:
            first_write_started.set()
            # Hold the first write until three more deliveries are queued behind it.
            deadline = time.monotonic() + 10
            while len(writer._queue) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        real_insert(batch)

    monkeypatch.setattr(writer, "_insert", insert)
    answers: dict[str, bool] = {}

    def post(event_id: str) -> None:
        body, headers = signed(event_id)
        answers[event_id] = (
            app.test_client()
            .post("/webhooks/sandbox", data=body, headers=headers)
            .json["duplicate"]
        )

    first = threading.Thread(target=post, args=("evt_g_0",))
    first.start()
    assert first_write_started.wait(10)
    rest = [threading.Thread(target=post, args=(e,)) for e in ("evt_g_1", "evt_g_2", "evt_g_1")]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join()

    assert batches == [1, 3]  # one transaction for the three that waited
    assert answers["evt_g_0"] is False and answers["evt_g_2"] is False
    assert stored(app) == 3  # evt_g_1 twice in one batch: stored once
    assert stored(app, "evt_g_1") == 1


def test_one_bad_row_fails_alone(db_app: Callable[..., Flask]) -> None:
    app = db_app()
    with app.app_context():
        writer: InboxWriter = events.inbox_writer()

    def values(event_id: str, event_type: str | None) -> dict[str, Any]:
        return {
            "gateway": "sandbox",
            "event_id": event_id,
            "event_type": event_type,
            "payload": "{}",
            "status": "received",
            "attempts": 0,
            "received_at": utcnow(),
        }

    slots = [
        _Slot(values("evt_ok_1", "t")),
        _Slot(values("evt_bad", None)),  # NOT NULL
        _Slot(values("evt_ok_2", "t")),
    ]
    writer._write(slots)
    assert slots[0].row_id is not None and slots[0].error is None
    assert slots[1].row_id is None and slots[1].error is not None
    assert slots[2].row_id is not None and slots[2].error is None
    assert stored(app) == 2


def test_a_processing_job_lost_after_the_commit_is_swept_up(db_app: Callable[..., Flask]) -> None:
    app = db_app(JOBS_EAGER=False)
    runner = app.extensions["kassa_jobs"]
    lost: list[tuple[str, tuple[Any, ...]]] = []
    real_submit = runner.submit
    runner.submit = lambda name, args: lost.append((name, args))  # the process dies here
    body, headers = signed("evt_lost")
    assert (
        app.test_client().post("/webhooks/sandbox", data=body, headers=headers).status_code == 200
    )
    assert [name for name, _ in lost] == ["webhooks.process_batch"]
    runner.submit = real_submit
    with app.app_context():
        assert events.retry_due() == 0  # not yet: its job may still be on its way
        db.session.execute(update(WebhookEvent).values(received_at=utcnow() - timedelta(minutes=3)))
        db.session.commit()
        assert events.retry_due() == 1
    runner.wait_idle()
    with app.app_context():
        assert events.counts_by_status() == {"processed": 1}


def test_a_backlog_left_by_a_stopped_worker_is_swept_up_in_one_run(
    db_app: Callable[..., Flask],
) -> None:
    """A worker stopped with thousands of events held (JOBS_EXIT_SECONDS) leaves them
    'received'; the sweep takes them by the batch, not a hundred a minute."""
    app = db_app(JOBS_EAGER=False, WEBHOOK_RETRY_BATCH=400)
    old = utcnow() - timedelta(minutes=3)
    with app.app_context():
        db.session.execute(
            insert(WebhookEvent),
            [
                {
                    "gateway": "sandbox",
                    "event_id": f"evt_left_{n}",
                    "event_type": "payment.succeeded",
                    "payload": "{}",
                    "status": "received",
                    "attempts": 0,
                    "received_at": old,
                }
                for n in range(450)
            ],
        )
        db.session.commit()
        assert events.retry_due() == 400
    app.extensions["kassa_jobs"].wait_idle(timeout=60)
    with app.app_context():
        assert events.counts_by_status() == {"processed": 400, "received": 50}


def test_a_batch_stores_every_value_exactly(db_app: Callable[..., Flask]) -> None:
    """Quotes, backslashes, newlines and non-ASCII text, and the arrival time to the
    microsecond, come back as they were written (PostgreSQL sends the batch as JSON)."""
    app = db_app()
    with app.app_context():
        writer: InboxWriter = events.inbox_writer()
    received = utcnow().replace(microsecond=123456)
    tricky = {
        'evt_q"uote': '{"note":"a \\"b\\" \\\\ c\\nd ☃ é"}',
        "evt_ünï\\code": '{"emoji":"💳","tab":"\\t"}',
    }
    slots = [
        _Slot(
            {
                "gateway": "sandbox",
                "event_id": event_id,
                "event_type": "payment.x",
                "payload": payload,
                "status": "received",
                "attempts": 0,
                "received_at": received,
            }
        )
        for event_id, payload in tricky.items()
    ]
    writer._write(slots)
    assert all(slot.error is None and slot.row_id is not None for slot in slots)
    with app.app_context():
        rows = db.session.execute(select(WebhookEvent)).scalars().all()
        assert {row.event_id: row.payload for row in rows} == tricky
        assert {row.id for row in rows} == {slot.row_id for slot in slots}
        for row in rows:
            stored_at = row.received_at
            if stored_at.tzinfo is None:  # SQLite keeps naive UTC
                stored_at = stored_at.replace(tzinfo=received.tzinfo)
            assert stored_at == received
